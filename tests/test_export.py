"""avatar export: the .glb's own skinning must pose the mesh as the tool does, its texture and UVs
must be the avatar's, and mistakes must stop with one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from outfit_avatar import outfit_avatar  # shared test helper

from avatarcli.avatar_file import Avatar, save_avatar
from avatarcli.cli.main import main
from avatarcli.errors import UserError
from avatarcli.media.gltf import pose_glb, read_glb
from avatarcli.pipelines.export import ExportOptions, export_glb, split_uv_seams, strongest_influences

WAVE = Path(__file__).resolve().parents[1] / "examples" / "motions" / "wave.npz"


@pytest.fixture(scope="module")
def clothed_avatar(anny_body, tmp_path_factory):
    """The synthetic outfit on a non-default shape with small clothing offsets (both must be baked
    into the file's rest mesh)."""
    generator = torch.Generator().manual_seed(0)
    avatar = outfit_avatar(
        anny_body,
        64,
        shape=torch.randn(anny_body.num_shape, generator=generator) * 0.5,
        clothing_offsets=torch.randn(anny_body.num_vertices, 3, generator=generator) * 0.005,
    )
    return save_avatar(avatar, tmp_path_factory.mktemp("export") / "person.pt"), avatar


@pytest.fixture(scope="module")
def exported(clothed_avatar, tmp_path_factory):
    path, _ = clothed_avatar
    out = tmp_path_factory.mktemp("glb") / "person_wave.glb"
    result = export_glb(path, out, ExportOptions(motion=str(WAVE), end=0.5))
    return result, read_glb(out)


def test_split_uv_seams_gives_one_uv_per_file_vertex():
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv_faces = np.array([[0, 1, 2], [4, 2, 3]])  # vertex 0 has two UVs: a seam
    source, uv_index, triangles = split_uv_seams(faces, uv_faces)
    assert len(source) == 5 and sorted(source.tolist()) == [0, 0, 1, 2, 3]
    assert np.array_equal(source[triangles], faces)
    assert np.array_equal(uv_index[triangles], uv_faces)


def test_strongest_influences_keep_four_and_sum_to_one():
    weights = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05], [1.0, 0, 0, 0, 0, 0]])
    joints, values = strongest_influences(weights)
    assert joints.shape == (2, 4) and np.allclose(values.sum(1), 1.0)
    assert joints[0, 0] == 0 and np.isclose(values[0, 0], 0.5 / 0.9)
    assert np.array_equal(joints[1], [0, 0, 0, 0]) and values[1, 0] == 1.0  # unused slots name joint 0


def test_file_layout_is_binary_gltf_2(exported):
    result, glb = exported
    data = Path(result.output).read_bytes()
    magic, version, total = struct.unpack_from("<III", data)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    doc = glb.document
    assert doc["asset"]["version"] == "2.0"
    assert all(view["byteOffset"] % 4 == 0 for view in doc["bufferViews"])
    assert len(doc["skins"][0]["joints"]) == 55 and len(doc["nodes"]) == 56
    primitive = doc["meshes"][0]["primitives"][0]["attributes"]
    position = doc["accessors"][primitive["POSITION"]]
    assert "min" in position and "max" in position  # glTF requires bounds on POSITION
    weights = glb.accessor(primitive["WEIGHTS_0"])
    assert np.allclose(weights.sum(1), 1.0, atol=1e-6)
    animation = doc["animations"][0]
    assert len(animation["channels"]) == 56 and result.frames == 15  # 0.5 s at 30 fps
    times = glb.accessor(animation["samplers"][0]["input"])
    assert np.allclose(np.diff(times), 1 / 30, atol=1e-6)


def _source(anny_body) -> np.ndarray:
    """The body vertex behind each file vertex (the split is tested on its own above)."""
    return split_uv_seams(anny_body.faces.numpy(), anny_body.uv_faces.numpy())[0]


def test_rest_mesh_is_the_avatars_clothed_body(exported, clothed_avatar, anny_body):
    _, glb = exported
    _, avatar = clothed_avatar
    from avatarcli.body.clothed import ClothedBody

    body = ClothedBody(anny_body, avatar.clothing_offsets)
    with torch.no_grad():
        rest = body.rest(avatar.shape[None]).vertices[0].numpy()
    positions = glb.accessor(glb.document["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    assert np.allclose(positions, rest[_source(anny_body)], atol=1e-6)  # shape and offsets baked in
    plain = anny_body.rest(avatar.shape[None]).vertices[0].numpy()[_source(anny_body)]
    assert np.abs(positions - plain).max() > 1e-3
    assert np.allclose(pose_glb(glb, None), positions, atol=1e-5)  # at rest the skin is the identity


def test_files_skinning_poses_the_mesh_as_the_tool_does(exported, clothed_avatar, anny_body):
    """A glTF viewer's skinning (computed from the file alone) against the tool's own posing."""
    result, glb = exported
    _, avatar = clothed_avatar
    from avatarcli.body.clothed import ClothedBody
    from avatarcli.pipelines.animate import AnimateOptions, motion_poses

    body = ClothedBody(anny_body, avatar.clothing_offsets)
    pose, transl, _ = motion_poses(str(WAVE), body, AnimateOptions(end=0.5))
    source = _source(anny_body)
    few = (anny_body.skin_weights > 1e-6).sum(1).numpy()[source] <= 4  # no weight was dropped
    for frame in (0, 7, 14):
        with torch.no_grad():
            ours = body(
                shape=avatar.shape[None], pose=pose[frame : frame + 1], transl=transl[frame : frame + 1]
            )
        error = np.linalg.norm(pose_glb(glb, frame) - ours.vertices[0].numpy()[source], axis=1)
        assert error[few].max() < 1e-4  # exact where four influences are all there is
        assert error.max() < 0.02 and error.mean() < 1e-3  # elsewhere the dropped weights' share
    assert result.skinning_error_max is not None and result.skinning_error_max < 0.02


def test_texture_and_uvs_are_the_avatars(exported, clothed_avatar, anny_body):
    import io

    from PIL import Image

    _, glb = exported
    _, avatar = clothed_avatar
    doc = glb.document
    png = glb.view_bytes(doc["images"][0]["bufferView"])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), avatar.textures["rgb"].numpy())
    uv = glb.accessor(doc["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    body_uv = {tuple(np.round(t, 6)) for t in anny_body.uv.numpy()}
    assert all(tuple(np.round(t, 6)) in body_uv for t in uv[::50])


def test_preview_shows_the_exported_mesh(exported):
    result, _ = exported
    from PIL import Image

    image = np.asarray(Image.open(result.preview))
    assert image.shape == (384, 384 * 3, 3)  # front, back, mid-clip
    tiles = [image[:, k * 384 : (k + 1) * 384].astype(int) for k in range(3)]
    assert all((tile.sum(-1) < 3 * 250).mean() > 0.03 for tile in tiles)  # a body is drawn in each
    assert np.abs(tiles[0] - tiles[1]).mean() > 1  # front and back differ


def test_cli_export_json_and_mistakes(clothed_avatar, tmp_path, capsys):
    path, _ = clothed_avatar
    out = tmp_path / "rest.glb"
    assert main(["export", str(path), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["animation_frames"] == 0 and summary["joints"] == 55 and out.exists()
    assert "animations" not in read_glb(out).document
    assert main(["export", str(path), "-o", str(out)]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(path), "-o", str(tmp_path / "x.fbx")]) == 2
    assert ".glb" in capsys.readouterr().err
    assert main(["export", str(path), "-o", str(tmp_path / "c.glb"), "--corrective-shapes"]) == 2
    assert "--motion" in capsys.readouterr().err and not (tmp_path / "c.glb").exists()
    # default output: next to the avatar, and its own preview stays the avatar's
    own_preview = path.with_name(path.stem + "_preview.png")
    own_preview.write_bytes(b"the avatar's preview")
    assert main(["export", str(path), "-q"]) == 0
    assert path.with_suffix(".glb").exists() and path.with_name(path.stem + "_glb_preview.png").exists()
    assert own_preview.read_bytes() == b"the avatar's preview"
    with pytest.raises(UserError, match="motion"):
        export_glb(path, tmp_path / "m.glb", ExportOptions(motion=str(tmp_path / "missing.bvh")))
    assert not (tmp_path / "m.glb").exists()


def test_what_the_file_cannot_hold_is_named(anny_body, tmp_path):
    avatar = outfit_avatar(anny_body, 32, textures={"neural": torch.zeros(16, 32, 32, dtype=torch.float16)})
    path = save_avatar(avatar, tmp_path / "neural.pt")
    result = export_glb(path, tmp_path / "neural.glb", ExportOptions(preview=False))
    assert result.preview is None and any("neural renderer" in note for note in result.notes)
    assert result.skinning_error_max is None  # no motion, nothing posed


def _grey_avatar_file(body, path: Path) -> Path:
    """An avatar of ``body`` at its neutral shape, in its own UV layout, plain grey."""
    avatar = Avatar(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=torch.zeros(body.num_shape),
        uv_layout=body.name,
        textures={"rgb": torch.full((32, 32, 3), 128, dtype=torch.uint8)},
    )
    return save_avatar(avatar, path)


def test_smplx_avatar_exports_its_rest_body(smplx_dir, tmp_path, monkeypatch):
    """The SMPL-X body (user files; here the synthetic fixture) exports the same way, and the
    notes say its pose-corrective shapes stay behind."""
    from avatarcli.body import load_body

    monkeypatch.setenv("AVATAR_SMPLX_DIR", str(smplx_dir))
    body = load_body("smplx", model_dir=smplx_dir)
    path = _grey_avatar_file(body, tmp_path / "smplx.pt")
    result = export_glb(path, tmp_path / "smplx.glb", ExportOptions(preview=False))
    glb = read_glb(result.output)
    source = split_uv_seams(body.faces.numpy(), body.uv_faces.numpy())[0]
    positions = glb.accessor(glb.document["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    with torch.no_grad():
        rest = body.rest(torch.zeros(1, body.num_shape)).vertices[0].numpy()
    assert np.allclose(positions, rest[source], atol=1e-5)
    assert any("pose-corrective" in note for note in result.notes)


def test_eight_influences_pose_exactly(clothed_avatar, anny_body, tmp_path):
    """A second JOINTS/WEIGHTS set keeps all of anny's (up to seven) weights: no posing error."""
    path, avatar = clothed_avatar
    result = export_glb(
        path, tmp_path / "eight.glb", ExportOptions(motion=str(WAVE), end=0.2, influences=8, preview=False)
    )
    glb = read_glb(result.output)
    attributes = glb.document["meshes"][0]["primitives"][0]["attributes"]
    assert {"JOINTS_0", "JOINTS_1", "WEIGHTS_0", "WEIGHTS_1"} <= set(attributes)
    assert result.skinning_error_max < 1e-4
    exact = export_glb(
        path,
        tmp_path / "eight_baked.glb",
        ExportOptions(motion=str(WAVE), end=0.2, influences=8, corrective_shapes=True, preview=False),
    )
    assert exact.morph_targets == 0 and any("no corrective morph targets" in n for n in exact.notes)
    with pytest.raises(UserError, match="influences"):
        export_glb(path, tmp_path / "six.glb", ExportOptions(influences=6))


def test_refine_steps_rebuild_the_texture_from_kept_photos(anny_body, tmp_path):
    """An avatar that keeps its photos (here two synthetic ones, exact fits) but whose file texture
    is flat grey: --refine-steps rebuilds the exported texture from the photos."""
    import io

    from PIL import Image

    from avatarcli.pipelines.synthetic import synthetic_person
    from avatarcli.texture.view_dependent import ViewPhotos, to_avatar_textures

    people = [synthetic_person(anny_body, size=(96, 144), texture_size=64, yaw_deg=y) for y in (0.0, 180.0)]
    with torch.no_grad():
        vertices = torch.cat([anny_body(shape=p.shape[None], pose=p.pose[None]).vertices for p in people])
    kept = ViewPhotos(
        photos=torch.stack([torch.from_numpy(p.image).permute(2, 0, 1).float() / 255 for p in people]),
        masks=torch.stack([torch.from_numpy(p.mask)[None].float() / 255 for p in people]),
        K=torch.cat([p.camera.K for p in people]),
        R=torch.cat([p.camera.R for p in people]),
        t=torch.cat([p.camera.t for p in people]),
        vertices=vertices,
    )
    grey = torch.full((64, 64, 3), 128, dtype=torch.uint8)
    path = save_avatar(
        outfit_avatar(anny_body, 64, textures={"rgb": grey, **to_avatar_textures(kept)}), tmp_path / "kept.pt"
    )
    plain = export_glb(path, tmp_path / "plain.glb", ExportOptions(preview=False))
    assert any("--refine-steps" in note for note in plain.notes)
    result = export_glb(path, tmp_path / "rebuilt.glb", ExportOptions(preview=False, refine_steps=4))
    assert any("rebuilt" in note for note in result.notes)
    glb = read_glb(result.output)
    png = glb.view_bytes(glb.document["images"][0]["bufferView"])
    texture = np.asarray(Image.open(io.BytesIO(png))).astype(int)
    truth = (people[0].texture.permute(1, 2, 0).numpy() * 255).round().astype(int)
    from avatarcli.texture import body_texel_maps

    used = body_texel_maps(anny_body, 64).mask.reshape(64, 64).numpy() > 0  # texels on the body
    error, grey_error = np.abs(texture - truth)[used].mean(), np.abs(128 - truth)[used].mean()
    assert error < 0.65 * grey_error, (error, grey_error)  # 0.53 measured
    with pytest.raises(UserError, match="keeps none"):
        export_glb(
            save_avatar(outfit_avatar(anny_body, 32), tmp_path / "none.pt"),
            tmp_path / "none.glb",
            ExportOptions(refine_steps=4),
        )


def test_an_avatar_in_another_uv_layout_exports_that_layout(anny_body, tmp_path):
    """An avatar whose texture is in an embedded layout (as --uv-layout makes) carries those UVs."""
    from avatarcli.pipelines.neural_render import LAYOUT_FACES_KEY, LAYOUT_UV_KEY

    mirrored = anny_body.uv.clone()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    avatar = outfit_avatar(
        anny_body, 32, uv_layout="dinar",
        textures={LAYOUT_UV_KEY: mirrored, LAYOUT_FACES_KEY: anny_body.uv_faces.clone()},
    )  # fmt: skip
    result = export_glb(
        save_avatar(avatar, tmp_path / "cut.pt"), tmp_path / "cut.glb", ExportOptions(preview=False)
    )
    glb = read_glb(result.output)
    uv = glb.accessor(glb.document["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    _, uv_index, _ = split_uv_seams(anny_body.faces.numpy(), anny_body.uv_faces.numpy())
    assert np.allclose(uv, mirrored.numpy()[uv_index], atol=1e-6)


def test_corrective_shapes_make_four_influences_pose_as_the_tool(clothed_avatar, exported, tmp_path):
    """Asked for on anny, the clip's corrective morph targets take in what four influences drop:
    the file (read back, posed as a viewer would) then lands within the tolerance of the tool."""
    path, _ = clothed_avatar
    plain, _ = exported
    result = export_glb(
        path,
        tmp_path / "baked.glb",
        ExportOptions(motion=str(WAVE), end=0.5, corrective_shapes=True, preview=False),
    )
    assert plain.morph_targets == 0 and plain.skinning_error_max > 1e-3  # the truncation error
    assert 1 <= result.morph_targets <= 64  # ≤ 32 components, each at most a target per sign
    assert result.corrective_error_before >= plain.skinning_error_max * 0.99  # every frame, not 24
    assert result.skinning_error_max < 6e-4
    glb = read_glb(result.output)
    mesh = glb.document["meshes"][0]
    assert len(mesh["primitives"][0]["targets"]) == result.morph_targets == len(mesh["weights"])
    assert mesh["extras"]["targetNames"][0] == "corrective_00"
    channels = glb.document["animations"][0]["channels"]
    assert [c["target"]["path"] for c in channels].count("weights") == 1
    samplers = glb.document["animations"][0]["samplers"]
    weights = glb.accessor(samplers[-1]["output"])  # the weights' sampler comes last
    assert weights.min() >= 0.0 and weights.max() <= 1.0  # Blender clamps shape keys to [0, 1]


def test_smplx_pose_correctives_are_baked_for_the_clip(tmp_path_factory, tmp_path, monkeypatch):
    """SMPL-X's pose-corrective shapes (here synthetic, ~1 cm) are baked by default when a clip is
    exported; without them (--no-corrective-shapes) the file misses them by centimetres."""
    from conftest import make_smplx_npz

    from avatarcli.body import load_body

    folder = tmp_path_factory.mktemp("smplx_correctives")
    make_smplx_npz(folder / "SMPLX_NEUTRAL.npz", correctives=0.01)
    monkeypatch.setenv("AVATAR_SMPLX_DIR", str(folder))
    body = load_body("smplx", model_dir=folder)
    assert body.has_pose_correctives
    path = _grey_avatar_file(body, tmp_path / "smplx.pt")
    motion = dict(motion=str(WAVE), end=0.5, preview=False)
    baked = export_glb(path, tmp_path / "baked.glb", ExportOptions(**motion))
    plain = export_glb(path, tmp_path / "plain.glb", ExportOptions(**motion, corrective_shapes=False))
    assert baked.morph_targets >= 1 and plain.morph_targets == 0
    assert plain.skinning_error_max > 5e-3
    assert baked.skinning_error_max < 6e-4
    assert any("left out" in note for note in plain.notes)
    assert not any("pose-corrective" in note for note in baked.notes)
    with pytest.raises(UserError, match="--motion"):
        export_glb(path, tmp_path / "still.glb", ExportOptions(corrective_shapes=True))
