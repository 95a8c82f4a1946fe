"""Avatar file: round trip, atomic write, clear errors for wrong/corrupt/foreign files."""

from __future__ import annotations

import pickle

import pytest
import torch

from avatarcli.avatar_file import FORMAT_VERSION, Avatar, load_avatar, save_avatar
from avatarcli.errors import AvatarFormatError, UserError


def _avatar(**kw) -> Avatar:
    g = torch.Generator().manual_seed(0)
    base = dict(
        body_backend="anny",
        body_model_id="anny-0.6.2-pca10-f1",
        shape=torch.randn(10, generator=g),
        uv_layout="anny",
        textures={
            "rgb": torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8, generator=g),
            "known": torch.ones(64, 64, dtype=torch.uint8),
            "neural": torch.randn(16, 64, 64, generator=g).half(),
        },
        views=[{"image_name": "a.jpg", "pose": torch.zeros(55, 3), "K": torch.eye(3), "width": 512}],
        weights={"dinar-generator": "ab" * 32},
        provenance={"seed": 3, "method": "rgb", "inputs": [{"name": "a.jpg", "sha256": "00"}]},
    )
    base.update(kw)
    return Avatar(**base)


def test_round_trip(tmp_path):
    a = _avatar()
    path = save_avatar(a, tmp_path / "x.pt")
    b = load_avatar(path, expect_backend="anny", expect_uv_layout="anny")
    assert b.body_backend == "anny" and b.uv_layout == "anny" and b.texture_size == 64
    assert torch.equal(a.shape, b.shape)
    for k in a.textures:
        assert torch.equal(a.textures[k], b.textures[k]) and a.textures[k].dtype == b.textures[k].dtype
    assert b.has_neural_texture and b.weights == a.weights
    assert b.provenance["seed"] == 3 and "created" in b.provenance
    assert torch.equal(b.views[0]["pose"], torch.zeros(55, 3))
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1  # no clothing offsets: still readable by version-1 releases
    assert b.clothing_offsets is None
    assert not list(tmp_path.glob(".*part*")), "temp file left behind"


def test_refuses_overwrite_unless_asked(tmp_path):
    path = save_avatar(_avatar(), tmp_path / "x.pt")
    with pytest.raises(UserError, match="--overwrite"):
        save_avatar(_avatar(), path)
    save_avatar(_avatar(uv_layout="dinar"), path, overwrite=True)
    assert load_avatar(path).uv_layout == "dinar"


def test_other_backend_or_layout_is_clear_error(tmp_path):
    path = save_avatar(_avatar(), tmp_path / "x.pt")
    with pytest.raises(AvatarFormatError, match="'anny' body, not 'smplx'"):
        load_avatar(path, expect_backend="smplx")
    with pytest.raises(AvatarFormatError, match="UV layout"):
        load_avatar(path, expect_uv_layout="dinar")
    with pytest.raises(AvatarFormatError, match="body model"):
        load_avatar(path, expect_model_id="anny-other")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a torch file at all", None],  # None → truncated real file
)
def test_corrupt_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:
        good = save_avatar(_avatar(), tmp_path / "good.pt")
        path.write_bytes(good.read_bytes()[:500])
    else:
        path.write_bytes(content)
    with pytest.raises(AvatarFormatError, match="not a readable avatar file"):
        load_avatar(path)


def test_foreign_and_malicious_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(AvatarFormatError, match="not an avatarcli avatar"):
        load_avatar(other)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "avatarcli-avatar", "x": Evil()}, f)
    with pytest.raises(AvatarFormatError):
        load_avatar(evil)
    newer = tmp_path / "newer.pt"
    d = _avatar().to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    torch.save(d, newer)
    with pytest.raises(AvatarFormatError, match="upgrade avatarcli"):
        load_avatar(newer)
    with pytest.raises(AvatarFormatError, match="does not exist"):
        load_avatar(tmp_path / "missing.pt")
