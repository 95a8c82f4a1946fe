"""Body backends: shapes, coordinate convention, joint map, SMPL-X fixture."""

from __future__ import annotations

import pytest
import torch

from avatarcli.body import load_body
from avatarcli.body.anny_backend import BONE_TO_JOINT, JOINT_PIVOT
from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES, mirror_name
from avatarcli.body.kinematics import axis_angle_to_matrix, matrix_to_axis_angle
from avatarcli.errors import UserError


def _height(verts: torch.Tensor) -> float:
    return float(verts[..., 1].max() - verts[..., 1].min())


def test_anny_forward_shapes_and_convention(anny_body):
    out = anny_body()
    assert out.vertices.shape == (1, 13718, 3)
    assert out.joints.shape == (1, NUM_JOINTS, 3)
    assert out.joint_transforms.shape == (1, NUM_JOINTS, 4, 4)
    assert 1.5 < _height(out.vertices) < 1.9
    # facing +Z: the face is in front (larger z) of the back of the head
    head = out.joints[0, JOINT_INDEX["head"]]
    head_verts = out.vertices[0][(out.vertices[0, :, 1] > head[1] + 0.05)]
    assert head_verts[:, 2].max() - head[2] > head[2] - head_verts[:, 2].min()
    # character's left is +X
    assert out.joints[0, JOINT_INDEX["left_wrist"], 0] > 0.2
    assert out.joints[0, JOINT_INDEX["head"], 1] > out.joints[0, JOINT_INDEX["pelvis"], 1]


def test_anny_protocol_buffers(anny_body):
    b = anny_body
    assert b.faces.shape == (27420, 3) and b.uv_faces.shape == (27420, 3)
    assert b.uv.min() >= 0 and b.uv.max() <= 1
    assert torch.allclose(b.skin_weights.sum(1), torch.ones(b.num_vertices), atol=1e-5)
    assert b.part_ids.shape == (27420,) and int(b.part_ids.max()) < 14
    assert not bool(b.joint_valid[JOINT_INDEX["jaw"]]) and int(b.joint_valid.sum()) == 54


def test_anny_joint_map_symmetric_and_inside(anny_body):
    j = anny_body.rest_joints
    for name in SMPLX_JOINT_NAMES:
        other = j[JOINT_INDEX[mirror_name(name)]]
        mirrored = j[JOINT_INDEX[name]] * torch.tensor([-1.0, 1.0, 1.0])
        assert torch.allclose(mirrored, other, atol=5e-3), name
    # the 22 body joints and the finger joints lie inside the (watertight) mesh
    import trimesh

    mesh = trimesh.Trimesh(anny_body.v_template.numpy(), anny_body.faces.numpy(), process=False)
    names = [n for n in SMPLX_JOINT_NAMES if n != "jaw" and "eye" not in n]
    inside = mesh.contains(j[[JOINT_INDEX[n] for n in names]].numpy())
    assert inside.mean() >= 0.95, [n for n, ok in zip(names, inside, strict=True) if not ok]
    # every anny bone maps to a canonical joint, every pivot is a real bone target
    assert set(BONE_TO_JOINT.values()) <= set(SMPLX_JOINT_NAMES)
    assert set(JOINT_PIVOT) <= set(SMPLX_JOINT_NAMES)


def test_anny_shape_and_pose_change_mesh(anny_body):
    shape = torch.zeros(2, anny_body.num_shape)
    shape[1, 0] = 2.0
    out = anny_body(shape=shape)
    assert not torch.allclose(out.vertices[0], out.vertices[1])
    pose = torch.zeros(1, NUM_JOINTS, 3)
    pose[0, JOINT_INDEX["left_elbow"], 1] = 1.2
    posed = anny_body(pose=pose)
    rest = anny_body()
    moved = (posed.vertices - rest.vertices).norm(dim=-1)[0]
    assert moved.max() > 0.1
    # only the arm moves: the feet stay put
    assert moved[rest.vertices[0, :, 1] < -0.6].max() < 1e-5
    # translation shifts everything
    t = anny_body(transl=torch.tensor([[0.0, 0.0, 2.0]]))
    assert torch.allclose(t.vertices - rest.vertices, torch.tensor([0.0, 0.0, 2.0]).expand_as(rest.vertices))


def test_anny_gradients_flow(anny_body):
    shape = torch.zeros(1, anny_body.num_shape, requires_grad=True)
    pose = torch.zeros(1, NUM_JOINTS, 3, requires_grad=True)
    anny_body(shape=shape, pose=pose).joints.sum().backward()
    assert shape.grad.abs().sum() > 0 and torch.isfinite(pose.grad).all()


def test_smplx_fixture_backend(smplx_dir):
    body = load_body("smplx", model_dir=smplx_dir)
    out = body()
    assert out.vertices.shape == (1, 10475, 3) and out.joints.shape == (1, NUM_JOINTS, 3)
    assert body.faces.shape == (20908, 3) and body.uv.shape[1] == 2
    assert 1.5 < float(out.joints[0, :, 1].max() - out.joints[0, :, 1].min()) + 0.25 < 1.9
    # the fixture's nose-side (jaw) is in front of the head joint: facing +Z
    assert out.joints[0, JOINT_INDEX["jaw"], 2] > out.joints[0, JOINT_INDEX["head"], 2]
    pose = torch.zeros(2, NUM_JOINTS, 3)
    pose[1, JOINT_INDEX["left_shoulder"], 2] = 1.0
    posed = body(pose=pose, shape=torch.zeros(2, 10))
    assert not torch.allclose(posed.vertices[0], posed.vertices[1])
    # a shoulder rotation leaves the pelvis and legs where they were
    assert torch.allclose(posed.joints[0, :12], posed.joints[1, :12], atol=1e-5)


def test_smplx_missing_folder_is_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("AVATAR_SMPLX_DIR", raising=False)
    with pytest.raises(UserError, match="SMPL-X"):
        load_body("smplx")
    with pytest.raises(UserError, match="SMPLX_NEUTRAL.npz"):
        load_body("smplx", model_dir=tmp_path)
    with pytest.raises(UserError, match="unknown body"):
        load_body("nope")


def test_rotation_round_trip():
    torch.manual_seed(0)
    aa = torch.randn(100, 3) * 1.5
    m = axis_angle_to_matrix(aa)
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(m)), m, atol=1e-5)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(100, 3, 3), atol=1e-5)


def test_building_the_anny_cache_prints_nothing_on_stdout(tmp_path, monkeypatch, capsys):
    """anny's warp greets on stdout when the body is first built; stdout belongs to ``--json``."""
    import numpy as np

    from avatarcli.body import anny_backend

    def noisy_build(log):
        print("Warp 1.19.0 initialized:")
        log("building the anny body model")
        return {"v_template": np.zeros((1, 3), np.float32)}

    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path))
    monkeypatch.setattr(anny_backend, "build_anny_data", noisy_build)
    data = anny_backend.load_anny_data()
    assert data["v_template"].shape == (1, 3) and anny_backend.cache_file().is_file()
    captured = capsys.readouterr()
    assert captured.out == "" and "Warp" in captured.err and "building" in captured.err
