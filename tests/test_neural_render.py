"""Drawing neural avatars: texture layout in the avatar file, renderer inputs, weights checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarcli.avatar_file import Avatar
from avatarcli.errors import AvatarFormatError, MissingWeightsError
from avatarcli.nets.dinar_renderer import DinarRenderer, DinarRendererConfig
from avatarcli.pipelines.neural_render import (
    NeuralFrameRenderer,
    avatar_textures_from_texture21,
    neural_renderer_available,
    texture21_from_avatar,
)
from avatarcli.render import Camera, framing_camera

torch.set_num_threads(1)
TEX = 32


@pytest.fixture(scope="module")
def renderer() -> DinarRenderer:
    torch.manual_seed(0)
    net = DinarRenderer(DinarRendererConfig.tiny())
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained network has
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def texture21(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    known = torch.zeros(TEX, TEX)
    known[4:20, 4:24] = 1
    filled = torch.nn.functional.max_pool2d(known[None, None], 3, 1, 1)[0, 0]
    tex = torch.cat(
        [
            torch.randn(16, TEX, TEX, generator=g),
            torch.rand(3, TEX, TEX, generator=g),
            filled[None],
            (filled - known)[None],
        ]
    )
    return tex, known, filled


def make_avatar(renderer: DinarRenderer | None, body, **overrides) -> Avatar:
    tex, known, filled = texture21()
    fields = dict(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=body.default_shape()[0],
        uv_layout=body.name,
        textures=avatar_textures_from_texture21(tex, known, filled),
        renderer=renderer.state_dict() if renderer is not None else None,
    )
    fields.update(overrides)
    return Avatar(**fields)


def test_texture_layout_round_trips_through_the_avatar_entries():
    tex, known, filled = texture21()
    entries = avatar_textures_from_texture21(tex, known, filled)
    assert entries["neural"].dtype == torch.float16 and entries["rgb"].dtype == torch.uint8
    avatar = Avatar("anny", "x", torch.zeros(3), "anny", entries)
    back = texture21_from_avatar(avatar)
    assert back.shape == (1, 21, TEX, TEX)
    torch.testing.assert_close(back[0, :16], tex[:16], atol=5e-3, rtol=1e-3)  # float16
    torch.testing.assert_close(back[0, 16:19], tex[16:19], atol=0.5 / 255 + 1e-6, rtol=0)  # uint8
    torch.testing.assert_close(back[0, 19:], tex[19:])
    del entries["neural_masks"]  # older/lighter files: masks rebuilt from filled and known
    torch.testing.assert_close(texture21_from_avatar(avatar)[0, 19:], tex[19:])
    del entries["rgb"]
    with pytest.raises(AvatarFormatError, match="'rgb'"):
        texture21_from_avatar(avatar)


@pytest.fixture(scope="module")
def posed(anny_body):
    pose = torch.zeros(3, 55, 3)
    pose[1, 16, 2] = -0.8  # raise an arm in the second frame
    pose[2, 0, 1] = 0.6  # turn the third
    vertices = anny_body(pose=pose).vertices.detach()
    return vertices, framing_camera(vertices[:1], size=36)


def test_renderer_inputs_follow_dinar_convention(renderer, anny_body, posed):
    vertices, camera = posed
    frames = NeuralFrameRenderer.for_avatar(
        make_avatar(renderer, anny_body), anny_body, "cpu", (1.0, 1.0, 1.0)
    )
    uv, uv_mask = frames.renderer_inputs(vertices, camera)
    assert uv.shape == (3, 2, 36, 36) and uv_mask.shape == (3, 1, 36, 36)
    on = uv_mask[:, 0] > 0
    assert 0.05 < on.float().mean() < 0.9
    assert bool((uv.permute(0, 2, 3, 1)[on].abs() <= 1).all())
    assert bool((uv.permute(0, 2, 3, 1)[~on] == -10).all())


def test_frames_for_a_tiny_avatar_on_anny(renderer, anny_body, posed):
    vertices, camera = posed
    avatar = make_avatar(renderer, anny_body)
    draw = NeuralFrameRenderer.for_avatar(avatar, anny_body, "cpu", (1.0, 1.0, 1.0), max_batch=2)
    frames = draw(vertices, camera)  # 36² is not divisible by 4: padded for the U-Net, cropped back
    assert isinstance(frames, np.ndarray) and frames.shape == (3, 36, 36, 3) and frames.dtype == np.uint8
    assert frames.std() > 1 and not np.array_equal(frames[0], frames[1])
    whole = NeuralFrameRenderer.for_avatar(avatar, anny_body, "cpu", (1.0, 1.0, 1.0), max_batch=8)
    np.testing.assert_array_equal(whole(vertices, camera), frames)  # chunking changes nothing
    # one camera per frame works as well as one shared camera
    cams = Camera(camera.K.expand(3, 3, 3), camera.R.expand(3, 3, 3), camera.t.expand(3, 3), 36, 36)
    np.testing.assert_array_equal(draw(vertices, cams), frames)
    # the texture drives the picture
    other = make_avatar(renderer, anny_body)
    other.textures["neural"] = -other.textures["neural"]
    changed = NeuralFrameRenderer.for_avatar(other, anny_body, "cpu", (1.0, 1.0, 1.0))(vertices, camera)
    assert not np.array_equal(changed, frames)


def test_posing_picks_the_neural_path(renderer, anny_body):
    from avatarcli.pipelines.posing import RGBFrameRenderer, make_frame_renderer

    avatar = make_avatar(renderer, anny_body)
    assert neural_renderer_available(avatar)
    chosen = make_frame_renderer(avatar, anny_body, torch.device("cpu"), (1.0, 1.0, 1.0))
    assert isinstance(chosen, NeuralFrameRenderer)
    forced_rgb = make_frame_renderer(avatar, anny_body, torch.device("cpu"), (1.0, 1.0, 1.0), neural=False)
    assert isinstance(forced_rgb, RGBFrameRenderer)


def install_renderer(folder, net: DinarRenderer) -> str:
    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import save_network
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    path = folder / "dinar_renderer.safetensors"
    save_network(net, path)
    sha = sha256_file(path)
    update_manifest(
        [WeightEntry("dinar_renderer", path.name, sha, path.stat().st_size, "test", "test")], folder
    )
    return sha


def test_installed_weights_and_the_avatars_record(renderer, anny_body, posed, tmp_path):
    vertices, camera = posed
    sha = install_renderer(tmp_path, renderer)
    own = NeuralFrameRenderer.for_avatar(make_avatar(renderer, anny_body), anny_body, "cpu")
    shared_avatar = make_avatar(None, anny_body, weights={"dinar_renderer": sha})
    assert neural_renderer_available(shared_avatar, tmp_path)
    shared = NeuralFrameRenderer.for_avatar(shared_avatar, anny_body, "cpu", weights_folder=tmp_path)
    np.testing.assert_array_equal(shared(vertices[:1], camera), own(vertices[:1], camera))

    stale = make_avatar(None, anny_body, weights={"dinar_renderer": "0" * 64})
    with pytest.raises(AvatarFormatError, match="made with other dinar_renderer weights"):
        NeuralFrameRenderer.for_avatar(stale, anny_body, "cpu", weights_folder=tmp_path)


def test_missing_renderer_weights(anny_body, tmp_path):
    avatar = make_avatar(None, anny_body)
    assert not neural_renderer_available(avatar, tmp_path)
    with pytest.raises(
        MissingWeightsError, match=r"dinar_renderer\.safetensors.*avatar weights import dinar"
    ):
        NeuralFrameRenderer.for_avatar(avatar, anny_body, "cpu", weights_folder=tmp_path)
    plain = make_avatar(None, anny_body)
    del plain.textures["neural"]
    assert not neural_renderer_available(plain, tmp_path)


def test_uv_layout_must_fit_the_body(renderer, anny_body, tmp_path):
    from safetensors.torch import save_file

    from avatarcli.io_utils import sha256_file
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    with pytest.raises(AvatarFormatError, match="'smplx' UV layout"):
        NeuralFrameRenderer.for_avatar(make_avatar(renderer, anny_body, uv_layout="smplx"), anny_body, "cpu")
    path = tmp_path / "dinar_uv_layout.safetensors"
    save_file({"uv": torch.rand(11438, 2), "uv_faces": torch.zeros(20908, 3, dtype=torch.long)}, str(path))
    entry = WeightEntry("dinar_uv_layout", path.name, sha256_file(path), path.stat().st_size, "t", "t")
    update_manifest([entry], tmp_path)
    dinar = make_avatar(renderer, anny_body, uv_layout="dinar")
    with pytest.raises(AvatarFormatError, match="--body smplx"):
        NeuralFrameRenderer.for_avatar(dinar, anny_body, "cpu", weights_folder=tmp_path)


def test_channels_last_and_bfloat16_variants(renderer, anny_body, posed):
    from avatarcli.pipelines.neural_render import body_uv_layout

    vertices, camera = posed
    tex, _, _ = texture21()

    def frames(**variant) -> np.ndarray:
        net = DinarRenderer(renderer.config)
        net.load_state_dict(renderer.state_dict())
        draw = NeuralFrameRenderer(net, tex[None], anny_body.faces, body_uv_layout(anny_body), **variant)
        return draw(vertices[:1], camera).astype(np.int32)

    reference = frames()
    assert np.abs(frames(channels_last=True) - reference).max() <= 1
    low = frames(dtype=torch.bfloat16, channels_last=True)
    assert low.shape == reference.shape and np.abs(low - reference).mean() < 8
