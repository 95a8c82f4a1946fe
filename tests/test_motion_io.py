"""Motion readers: FBX (child process), BVH, AMASS / AIST++ / SMPL-X params, our .npz clips,
and the allow-list unpickler — on the shared real files and on small files built here."""

from __future__ import annotations

import json
import os
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarcli.body.joints import JOINT_INDEX, SMPLX_JOINT_NAMES
from avatarcli.errors import InputFileError
from avatarcli.motion import Clip, load_motion, save_clip
from avatarcli.motion import fbx as fbx_reader
from avatarcli.motion.procedural import walk_clip
from avatarcli.motion.safe_pickle import safe_load_pickle

MOTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "motions"


def shared(name: str) -> Path:
    path = MOTIONS / name
    if not path.is_file():
        pytest.skip(f"shared test data {path} is not available")
    return path


def direction(p: np.ndarray, a: int, b: int) -> np.ndarray:
    d = p[..., b, :] - p[..., a, :]
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------- FBX
@pytest.mark.parametrize(
    "name, joints, frames",
    [("mixamo_Walking_InPlace.fbx", 65, 62), ("mixamo_Breathing_Idle.fbx", 37, 596)],
)
def test_fbx_mixamo_clips_read_as_y_up_metres_facing_z(name: str, joints: int, frames: int) -> None:
    clip = load_motion(shared(name))
    assert clip.num_joints == joints and clip.num_frames == frames
    assert clip.fps == pytest.approx(60.0)
    assert clip.joint_names[0] == "mixamorig:Hips"
    _, rest = clip.rest_transforms()
    idx = {n.split(":")[-1]: i for i, n in enumerate(clip.joint_names)}
    assert 0.85 < rest[idx["Hips"], 1] < 1.15  # hips about a metre up
    assert rest[idx["LeftUpLeg"], 0] > 0.05 > -0.05 > rest[idx["RightUpLeg"], 0]  # left at +X
    assert direction(rest, idx["LeftArm"], idx["LeftForeArm"]) @ [1, 0, 0] > 0.99  # T-pose rest
    assert rest[idx["LeftToeBase"], 2] > rest[idx["LeftFoot"], 2]  # toes point forward (+Z)
    _, pos = clip.global_transforms()
    assert np.isfinite(pos).all() and pos[..., 1].min() > -0.1  # stays above the floor


def test_fbx_fk_reproduces_the_parsed_world_positions() -> None:
    path = shared("mixamo_Punching_Right.fbx")
    arrays = fbx_reader._parse_in_child(path)
    clip = fbx_reader._to_clip(arrays, path)
    _, pos = clip.global_transforms()
    np.testing.assert_allclose(pos, arrays["world"][:, :, :3, 3], atol=1e-6)


def test_fbx_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "cut.fbx"
    bad.write_bytes(shared("mixamo_Running_InPlace.fbx").read_bytes()[:20000])
    with pytest.raises(InputFileError, match=r"cut\.fbx.*truncated or corrupt"):
        load_motion(bad)


def test_fbx_binary_header_with_garbage_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.fbx"
    bad.write_bytes(fbx_reader.FBX_BINARY_MAGIC + b"\x1a\x00" + os.urandom(300))
    with pytest.raises(InputFileError, match=r"garbage\.fbx.*cannot parse it as FBX"):
        load_motion(bad)


def test_non_fbx_data_with_fbx_extension_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "photo.fbx"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(InputFileError, match=r"photo\.fbx does not look like a FBX file"):
        load_motion(fake)


_ASCII_FBX = """; FBX 7.4.0 project file
FBXHeaderExtension:  {{
	FBXHeaderVersion: 1003
	FBXVersion: 7400
}}
Objects:  {{
{objects}
}}
Connections:  {{
{connections}
}}
"""


def test_fbx_without_skeleton_or_animation_is_a_clear_error(tmp_path: Path) -> None:
    no_bones = tmp_path / "empty.fbx"
    no_bones.write_text(
        _ASCII_FBX.format(
            objects='\tModel: 1000, "Model::Thing", "Null" {\n\t\tVersion: 232\n\t}',
            connections='\tC: "OO",1000,0',
        )
    )
    with pytest.raises(InputFileError, match=r"empty\.fbx: it has no skeleton"):
        load_motion(no_bones)
    still = tmp_path / "still.fbx"
    still.write_text(
        _ASCII_FBX.format(
            objects='\tNodeAttribute: 2000, "NodeAttribute::", "LimbNode" {\n\t\tTypeFlags: "Skeleton"\n\t}\n'
            '\tModel: 1000, "Model::Hips", "LimbNode" {\n\t\tVersion: 232\n\t}',
            connections='\tC: "OO",1000,0\n\tC: "OO",2000,1000',
        )
    )
    with pytest.raises(InputFileError, match=r"still\.fbx: it has no animation"):
        load_motion(still)


def test_a_crashing_fbx_parser_cannot_take_the_caller_down(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "crashing_worker.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(fbx_reader, "WORKER_MODULE", "crashing_worker")
    path = tmp_path / "any.fbx"
    path.write_bytes(fbx_reader.FBX_BINARY_MAGIC + bytes(64))
    with pytest.raises(InputFileError, match=r"any\.fbx: the FBX parser crashed \(signal 11\)"):
        load_motion(path)


# ---------------------------------------------------------------------------------- BVH
def test_bvh_cmu_cgspeed_file() -> None:
    clip = load_motion(shared("cmu_131_01.bvh"))
    assert clip.num_joints == 31 and clip.num_frames == 994
    assert clip.fps == pytest.approx(120.0, rel=1e-4)
    assert float(clip.metadata["unit_scale"]) == pytest.approx(0.0254 / 0.45)
    _, pos = clip.global_transforms()
    hips = clip.index("Hips")
    assert 0.8 < pos[0, hips, 1] < 1.1  # hip height in metres
    assert pos[:, clip.index("LeftToe"), 1].min() > -0.05  # feet on the floor, not below
    assert pos[0, clip.index("LeftHip"), 0] > pos[0, clip.index("RightHip"), 0]  # left at +X


TINY_BVH = """HIERARCHY
ROOT Hips
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation
  JOINT Spine
  {{
    OFFSET 0 {spine} 0
    CHANNELS 3 Xrotation Zrotation Yrotation
    End Site
    {{
      OFFSET 0 {spine} 0
    }}
  }}
  JOINT LeftUpLeg
  {{
    OFFSET {hip} 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT LeftLeg
    {{
      OFFSET 0 -{leg} 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {{
        OFFSET 0 -{leg} 0
      }}
    }}
  }}
}}
MOTION
Frames: {frames}
Frame Time: 0.04
{rows}
"""


def tiny_bvh(tmp_path: Path, rows: list[str], *, unit_cm: bool = True, frames: int | None = None) -> Path:
    scale = 100.0 if unit_cm else 1.0
    text = TINY_BVH.format(
        spine=30 * scale / 100,
        hip=10 * scale / 100,
        leg=45 * scale / 100,
        frames=len(rows) if frames is None else frames,
        rows="\n".join(rows),
    )
    path = tmp_path / "tiny.bvh"
    path.write_text(textwrap.dedent(text))
    return path


def test_bvh_channel_orders_units_and_fk(tmp_path: Path) -> None:
    rows = [
        "0 90 0   0 0 0   0 0 0   0 0 0   0 0 0",
        # root turned 90° about Y; spine bent 90° about X; hip swung 90° about Z
        "10 90 20   90 0 0   90 0 0   90 0 0   0 0 0",
    ]
    clip = load_motion(tiny_bvh(tmp_path, rows))  # centimetres: 90 cm hips
    assert clip.fps == pytest.approx(25.0)
    assert clip.metadata["unit_scale"] == "0.01"
    _, pos = clip.global_transforms()
    np.testing.assert_allclose(pos[0, 0], [0, 0.9, 0], atol=1e-9)
    np.testing.assert_allclose(pos[1, 0], [0.1, 0.9, 0.2], atol=1e-9)
    # frame 1: yaw 90° maps +X → −Z; the hip offset (0.1, 0, 0) lands at −Z
    np.testing.assert_allclose(pos[1, clip.index("LeftUpLeg")] - pos[1, 0], [0, 0, -0.1], atol=1e-9)
    # hip rotated 90° about its local Z (Zrotation first in its channel list): down (−Y) → +X,
    # then the root's yaw turns +X into −Z
    knee = pos[1, clip.index("LeftLeg")] - pos[1, clip.index("LeftUpLeg")]
    np.testing.assert_allclose(knee, [0, 0, -0.45], atol=1e-9)
    # spine 90° about X (after the yaw): up (+Y) → +Z → yawed to +X
    # (Xrotation applied first, i.e. R = Ry(90) · Rx(90) · ...): check against an explicit product
    from avatarcli.body.kinematics import euler_to_matrix

    r_root = euler_to_matrix(torch.tensor([[90.0, 0, 0]], dtype=torch.float64), "YXZ")[0].numpy()
    r_spine = euler_to_matrix(torch.tensor([[90.0, 0, 0]], dtype=torch.float64), "XZY")[0].numpy()
    assert clip.index("Spine") == 1
    rot, _ = clip.global_transforms()
    np.testing.assert_allclose(rot[1, 1], r_root @ r_spine, atol=1e-9)


def test_bvh_z_up_file_is_turned_y_up(tmp_path: Path) -> None:
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 95
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Head
  {
    OFFSET 0 0 60
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 0 10
    }
  }
  JOINT LeftFoot
  {
    OFFSET 10 0 -90
    CHANNELS 3 Zrotation Yrotation Xrotation
  }
}
MOTION
Frames: 1
Frame Time: 0.0333333
0 0 95 0 0 0 0 0 0 0 0 0
"""
    path = tmp_path / "zup.bvh"
    path.write_text(text)
    clip = load_motion(path)
    assert "Z" in clip.metadata["up_axis"]
    _, pos = clip.global_transforms()
    assert pos[0, clip.index("Head"), 1] > pos[0, 0, 1] > pos[0, clip.index("LeftFoot"), 1]
    assert pos[0, 0, 1] == pytest.approx(0.95)  # root channels are absolute, not added to OFFSET


def test_bvh_mismatched_channel_count_is_a_clear_error(tmp_path: Path) -> None:
    path = tiny_bvh(tmp_path, ["0 90 0 0 0 0 0 0 0 0 0 0 0 0"])  # 14 values, 15 channels
    with pytest.raises(
        InputFileError, match=r"tiny\.bvh.*frame 0 has 14 values but the hierarchy declares 15"
    ):
        load_motion(path)


def test_bvh_bad_channel_declaration_and_missing_frames(tmp_path: Path) -> None:
    path = tiny_bvh(tmp_path, ["0 " * 15])
    path.write_text(
        path.read_text().replace(
            "CHANNELS 3 Xrotation Zrotation Yrotation", "CHANNELS 4 Xrotation Zrotation Yrotation"
        )
    )
    with pytest.raises(InputFileError, match=r"tiny\.bvh.*Spine: bad channel list"):
        load_motion(path)
    path = tiny_bvh(tmp_path, ["0 " * 15], frames=5)
    with pytest.raises(InputFileError, match="header says 5 frames but the file has 1"):
        load_motion(path)


# ------------------------------------------------------------------- SMPL-family files
def test_aist_pickle_maps_joint_for_joint() -> None:
    path = shared("aistpp_smpl_sequence_sample.pkl")
    clip = load_motion(path)
    raw = safe_load_pickle(path)
    assert clip.joint_names == SMPLX_JOINT_NAMES and clip.num_frames == 127 and clip.fps == 60.0
    rot, _ = clip.global_transforms()
    from avatarcli.body.kinematics import axis_angle_to_matrix

    expected = axis_angle_to_matrix(torch.from_numpy(raw["smpl_poses"][:, 3 * 18 : 3 * 19]))  # left_elbow
    local = torch.from_numpy(rot[:, 16]).transpose(-1, -2) @ torch.from_numpy(rot[:, 18])
    np.testing.assert_allclose(local.numpy(), expected.numpy(), atol=1e-9)
    travel = clip.root_translation - clip.root_translation[0]
    np.testing.assert_allclose(travel, raw["smpl_trans"] - raw["smpl_trans"][0], atol=1e-6)


def test_smpl_params_pickle_is_a_one_frame_clip() -> None:
    clip = load_motion(shared("animnerf_X_pose_smpl_params.pkl"))
    raw = safe_load_pickle(shared("animnerf_X_pose_smpl_params.pkl"))
    assert clip.num_frames == 1 and clip.metadata["format"] == "smpl-params"
    from avatarcli.motion.rotations import quaternion_to_matrix

    got = quaternion_to_matrix(torch.from_numpy(clip.rotations[0, 1:22]))
    from avatarcli.body.kinematics import axis_angle_to_matrix

    want = axis_angle_to_matrix(torch.from_numpy(raw["body_pose"][:63].reshape(21, 3)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-9)


def test_amass_npz_smplh_layout_and_z_up(tmp_path: Path) -> None:
    frames = 5
    poses = np.zeros((frames, 156))
    poses[:, 0] = np.pi / 2  # AMASS root: +90° about X puts the body's up axis on world +Z
    poses[:, 22 * 3 + 2] = 0.3  # SMPL+H joint 22 = left_index1
    # the body faces world −Y there; it walks forward along −Y, 0.9 m up along +Z
    trans = np.stack([np.zeros(frames), np.linspace(0, -1, frames), np.full(frames, 0.9)], 1)
    path = tmp_path / "amass.npz"
    np.savez(path, poses=poses, trans=trans, mocap_framerate=np.array(120.0), betas=np.zeros(16))
    clip = load_motion(path)
    assert clip.fps == 120.0 and clip.metadata["layout"] == "SMPL+H" and "Z" in clip.metadata["up_axis"]
    rot, pos = clip.global_transforms()
    np.testing.assert_allclose(rot[:, 0], np.broadcast_to(np.eye(3), (frames, 3, 3)), atol=1e-9)  # upright
    assert np.diff(pos[:, 0, 2]).min() > 0  # forward is now +Z
    assert pos[0, 0, 1] == pytest.approx(0.9 + 0.028)  # AMASS up (+Z) is now +Y
    quat = clip.rotations[0, JOINT_INDEX["left_index1"]]
    assert 2 * np.arccos(quat[0]) == pytest.approx(0.3)


def test_smplx_params_npz_with_hands_and_sequence(tmp_path: Path) -> None:
    path = tmp_path / "fit.npz"
    body = np.zeros((3, 21, 3))
    body[:, 17, 2] = 0.5  # left_elbow (joint 18)
    np.savez(
        path,
        global_orient=np.zeros((3, 3)),
        body_pose=body,
        transl=np.zeros((3, 3)),
        left_hand_pose=np.full((3, 45), 0.01),
        right_hand_pose=np.zeros((3, 12)),  # PCA coefficients: ignored (rest)
    )
    clip = load_motion(path)
    assert clip.num_frames == 3
    assert 2 * np.arccos(clip.rotations[0, 18, 0]) == pytest.approx(0.5)
    assert clip.rotations[0, 25, 0] < 1.0 and clip.rotations[0, 40, 0] == pytest.approx(1.0)


# ------------------------------------------------------------------ safety + our format
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "poses.pkl"
    path.write_bytes(pickle.dumps({"smpl_poses": np.zeros((2, 72)), "x": _Evil(marker)}))
    with pytest.raises(InputFileError, match=r"poses\.pkl: refusing to load (posix|nt|os)\.system"):
        load_motion(path)
    assert not marker.exists()


def test_pickle_that_is_not_a_dict_or_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(InputFileError, match="expected a dict"):
        load_motion(path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputFileError, match=r"list\.pkl is not a valid pickle"):
        load_motion(path)


def test_unknown_and_empty_files(tmp_path: Path) -> None:
    odd = tmp_path / "dance.xyz"
    odd.write_text("hello")
    with pytest.raises(InputFileError, match="unrecognised motion format"):
        load_motion(odd)
    empty = tmp_path / "empty.bvh"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="is empty"):
        load_motion(empty)
    with pytest.raises(InputFileError, match="does not exist"):
        load_motion(tmp_path / "missing.fbx")
    keys = tmp_path / "other.npz"
    np.savez(keys, something=np.zeros(3))
    with pytest.raises(InputFileError, match="not a known motion layout"):
        load_motion(keys)
    objects = tmp_path / "objects.npz"
    np.savez(objects, poses=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputFileError, match="pickled objects"):
        load_motion(objects)


def test_clip_npz_round_trip(tmp_path: Path) -> None:
    clip = walk_clip()
    path = save_clip(clip, tmp_path / "walk.npz")
    back = load_motion(path)
    assert back.joint_names == clip.joint_names and back.fps == clip.fps
    np.testing.assert_array_equal(back.parents, clip.parents)
    for name in ("rest_offsets", "rest_rotations", "rotations", "root_translation"):
        np.testing.assert_allclose(getattr(back, name), getattr(clip, name), atol=1e-6)
    np.testing.assert_allclose(back.global_transforms()[1], clip.global_transforms()[1], atol=1e-5)
    with np.load(path, allow_pickle=False) as raw:
        assert str(raw["format"]) == "avatarcli-motion" and int(raw["version"]) == 1


def test_clip_npz_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = save_clip(walk_clip(), tmp_path / "walk.npz")
    with np.load(path, allow_pickle=False) as raw:
        arrays = dict(raw)
    arrays["version"] = np.array(99)
    np.savez(path, **arrays)
    with pytest.raises(InputFileError, match="version 99"):
        load_motion(path)


def test_bundled_examples_load() -> None:
    folder = Path(__file__).resolve().parents[1] / "examples" / "motions"
    clips = {p.stem: load_motion(p) for p in sorted(folder.glob("*.npz"))}
    assert {"walk", "wave"} <= set(clips)
    assert all(isinstance(c, Clip) and c.joint_names == SMPLX_JOINT_NAMES for c in clips.values())
    assert all(p.stat().st_size < 64_000 for p in folder.glob("*.npz"))


def test_fbx_worker_module_runs_standalone(tmp_path: Path) -> None:
    """The child imports neither torch nor the rest of avatarcli (fast start, small blast radius)."""
    import subprocess

    code = "import json, sys, avatarcli.motion._fbx_worker; print(json.dumps('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


def test_fbx_worker_trs_matrices_match_the_body_kinematics() -> None:
    from avatarcli.motion._fbx_worker import _trs_matrices
    from avatarcli.motion.rotations import quaternion_to_matrix

    rng = np.random.default_rng(0)
    quat_xyzw = rng.normal(size=(5, 4))
    quat_xyzw /= np.linalg.norm(quat_xyzw, axis=1, keepdims=True)
    values = np.concatenate([rng.normal(size=(5, 3)), quat_xyzw, rng.uniform(0.5, 2, size=(5, 3))], 1)
    m = _trs_matrices(values)
    rot = quaternion_to_matrix(torch.from_numpy(quat_xyzw[:, [3, 0, 1, 2]])).numpy()
    np.testing.assert_allclose(m[:, :3, :3], rot * values[:, None, 7:], atol=1e-12)
    np.testing.assert_allclose(m[:, :3, 3], values[:, :3])
    np.testing.assert_allclose(m[:, 3], np.broadcast_to([0, 0, 0, 1.0], (5, 4)))


# A hand-written ASCII FBX: three LimbNodes (no namespace), one take rotating LeftArm 0→90° about
# Z over 1 s at 30 fps, centimetre units; optionally a bind pose that differs from the static pose.
ASCII_ANIM_FBX = """; FBX 7.4.0 project file
FBXHeaderExtension:  {
	FBXHeaderVersion: 1003
	FBXVersion: 7400
}
GlobalSettings:  {
	Version: 1000
	Properties70:  {
		P: "UpAxis", "int", "Integer", "",1
		P: "UpAxisSign", "int", "Integer", "",1
		P: "FrontAxis", "int", "Integer", "",2
		P: "FrontAxisSign", "int", "Integer", "",1
		P: "CoordAxis", "int", "Integer", "",0
		P: "CoordAxisSign", "int", "Integer", "",1
		P: "UnitScaleFactor", "double", "Number", "",1
		P: "TimeMode", "enum", "", "",6
	}
}
Objects:  {
	NodeAttribute: 11, "NodeAttribute::", "LimbNode" {
		TypeFlags: "Skeleton"
	}
	NodeAttribute: 12, "NodeAttribute::", "LimbNode" {
		TypeFlags: "Skeleton"
	}
	NodeAttribute: 13, "NodeAttribute::", "LimbNode" {
		TypeFlags: "Skeleton"
	}
	Model: 1, "Model::Hips", "LimbNode" {
		Version: 232
		Properties70:  {
			P: "Lcl Translation", "Lcl Translation", "", "A",0,100,0
			P: "Lcl Rotation", "Lcl Rotation", "", "A",0,0,@STATIC_ROT@
		}
	}
	Model: 2, "Model::LeftArm", "LimbNode" {
		Version: 232
		Properties70:  {
			P: "Lcl Translation", "Lcl Translation", "", "A",20,0,0
		}
	}
	Model: 3, "Model::LeftHand", "LimbNode" {
		Version: 232
		Properties70:  {
			P: "Lcl Translation", "Lcl Translation", "", "A",30,0,0
		}
	}
@BIND@
	AnimationStack: 200, "AnimStack::Take 001", "" {
		Properties70:  {
			P: "LocalStop", "KTime", "Time", "",46186158000
		}
	}
	AnimationLayer: 300, "AnimLayer::BaseLayer", "" {
	}
	AnimationCurveNode: 400, "AnimCurveNode::R", "" {
		Properties70:  {
			P: "d|X", "Number", "", "A",0
			P: "d|Y", "Number", "", "A",0
			P: "d|Z", "Number", "", "A",0
		}
	}
	AnimationCurve: 500, "AnimCurve::", "" {
		Default: 0
		KeyVer: 4009
		KeyTime: *2 {
			a: 0,46186158000
		}
		KeyValueFloat: *2 {
			a: 0,90
		}
		KeyAttrFlags: *1 {
			a: 24840
		}
		KeyAttrDataFloat: *4 {
			a: 0,0,0,0
		}
		KeyAttrRefCount: *1 {
			a: 2
		}
	}
}
Connections:  {
	C: "OO",1,0
	C: "OO",2,1
	C: "OO",3,2
	C: "OO",11,1
	C: "OO",12,2
	C: "OO",13,3
	C: "OO",300,200
	C: "OO",400,300
	C: "OP",400,2,"Lcl Rotation"
	C: "OP",500,400,"d|Z"
}
"""
_BIND_NODE = """\t\tPoseNode:  {{
\t\t\tNode: {node}
\t\t\tMatrix: *16 {{
\t\t\t\ta: 1,0,0,0,0,1,0,0,0,0,1,0,{x},100,0,1
\t\t\t}}
\t\t}}"""


def ascii_fbx(path: Path, *, bind_pose: bool) -> Path:
    bind = ""
    if bind_pose:
        nodes = "\n".join(_BIND_NODE.format(node=n, x=x) for n, x in ((1, 0), (2, 20), (3, 50)))
        bind = (
            '\tPose: 100, "Pose::BIND_POSES", "BindPose" {\n\t\tType: "BindPose"\n\t\tVersion: 100\n'
            f"\t\tNbPoseNodes: 3\n{nodes}\n\t}}"
        )
    # with a bind pose, the static pose turns the hips by -45° so the two differ
    text = ASCII_ANIM_FBX.replace("@BIND@", bind).replace("@STATIC_ROT@", "-45" if bind_pose else "0")
    path.write_text(text)
    return path


def test_ascii_fbx_without_namespace_is_sampled_at_its_frame_rate(tmp_path: Path) -> None:
    clip = load_motion(ascii_fbx(tmp_path / "arm.fbx", bind_pose=False))
    assert clip.joint_names == ("Hips", "LeftArm", "LeftHand")
    assert clip.num_frames == 31 and clip.fps == pytest.approx(30.0)
    _, rest = clip.rest_transforms()
    np.testing.assert_allclose(rest, [[0, 1, 0], [0.2, 1, 0], [0.5, 1, 0]], atol=1e-6)  # cm → m
    _, pos = clip.global_transforms()
    hand = pos[:, 2] - pos[:, 1]
    angles = np.rad2deg(np.arctan2(hand[:, 1], hand[:, 0]))
    np.testing.assert_allclose(angles[[0, 15, 30]], [0, 45, 90], atol=1e-3)


def test_fbx_rest_pose_comes_from_the_bind_pose(tmp_path: Path) -> None:
    clip = load_motion(ascii_fbx(tmp_path / "bound.fbx", bind_pose=True))
    _, rest = clip.rest_transforms()
    np.testing.assert_allclose(rest, [[0, 1, 0], [0.2, 1, 0], [0.5, 1, 0]], atol=1e-6)  # bind, not static
    _, pos = clip.global_transforms()
    arm = pos[0, 1] - pos[0, 0]
    np.testing.assert_allclose(arm / np.linalg.norm(arm), [np.sqrt(0.5), -np.sqrt(0.5), 0], atol=1e-6)


def test_bvh_facing_x_is_turned_to_face_z(tmp_path: Path) -> None:
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 90 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT LeftUpLeg
  {
    OFFSET 0 0 -10
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -85 0
    }
  }
  JOINT RightUpLeg
  {
    OFFSET 0 0 10
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -85 0
    }
  }
  JOINT Spine
  {
    OFFSET 0 60 0
    CHANNELS 3 Zrotation Xrotation Yrotation
  }
}
MOTION
Frames: 2
Frame Time: 0.5
0 90 0 0 0 0 0 0 0 0 0 0 0 0 0
50 90 0 0 0 0 0 0 0 0 0 0 0 0 0
"""
    path = tmp_path / "sideways.bvh"
    path.write_text(text)  # left hip at −Z: the character faces +X and walks forward along +X
    clip = load_motion(path)
    assert clip.metadata["turned_deg"] == "-90"
    _, pos = clip.global_transforms()
    left, right = clip.index("LeftUpLeg"), clip.index("RightUpLeg")
    np.testing.assert_allclose(pos[0, left] - pos[0, right], [0.2, 0, 0], atol=1e-9)
    np.testing.assert_allclose(pos[1, 0] - pos[0, 0], [0, 0, 0.5], atol=1e-9)  # forward is now +Z
