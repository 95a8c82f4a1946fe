"""Clip editing (resample / trim / loop / in-place), FK, and retargeting onto body skeletons."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarcli.body.joints import JOINT_INDEX, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from avatarcli.body.kinematics import axis_angle_to_matrix, forward_kinematics, matrix_to_axis_angle
from avatarcli.errors import InputFileError, UserError
from avatarcli.motion import Clip, load_motion, retarget
from avatarcli.motion.evaluation import bone_direction_errors
from avatarcli.motion.mappings import MIXAMO, match_joints
from avatarcli.motion.procedural import walk_clip, wave_clip
from avatarcli.motion.rotations import matrix_to_quaternion, quaternion_to_matrix
from avatarcli.motion.skeletons import Skeleton

MOTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "motions"
RNG_SEED = 7


def spinning_clip(frames: int = 9, fps: float = 8.0) -> Clip:
    """root → arm → hand; the arm turns about Z at a constant 10° per frame; the root slides in X."""
    angles = np.deg2rad(10.0 * np.arange(frames))
    rot = np.zeros((frames, 3, 4))
    rot[:, :, 0] = 1.0
    rot[:, 1] = np.stack([np.cos(angles / 2), 0 * angles, 0 * angles, np.sin(angles / 2)], 1)
    trans = np.stack([0.1 * np.arange(frames), np.ones(frames), np.zeros(frames)], 1)
    return Clip(
        joint_names=("root", "arm", "hand"),
        parents=np.array([-1, 0, 1]),
        rest_offsets=np.array([[0, 1.0, 0], [0.5, 0, 0], [0.5, 0, 0]]),
        rest_rotations=np.tile([1.0, 0, 0, 0], (3, 1)),
        rotations=rot,
        root_translation=trans,
        fps=fps,
    )


def angle_of(q: np.ndarray) -> np.ndarray:
    return np.rad2deg(2 * np.arctan2(q[..., 3], q[..., 0]))


def random_pose_clip(frames: int = 6, scale: float = 0.5) -> Clip:
    """The T-pose template with random joint rotations and root motion (SMPL-style clip)."""
    base = walk_clip()
    rng = np.random.default_rng(RNG_SEED)
    aa = torch.from_numpy(rng.normal(scale=scale, size=(frames, 55, 3)))
    quats = matrix_to_quaternion(axis_angle_to_matrix(aa)).numpy()
    trans = base.rest_offsets[0] + rng.normal(scale=0.2, size=(frames, 3))
    return replace(base, rotations=quats, root_translation=trans, source="random")


def rebased(clip: Clip, seed: int = 3) -> Clip:
    """The same motion with every bone frame turned by a random fixed rotation (like FBX bones),
    and Mixamo joint names: world positions are unchanged."""
    rng = np.random.default_rng(seed)
    q = quaternion_to_matrix(torch.from_numpy(rng.normal(size=(clip.num_joints, 4))))  # (J,3,3)
    rot, _ = (torch.from_numpy(a) for a in clip.global_transforms())
    rest_rot, _ = (torch.from_numpy(a) for a in clip.rest_transforms())
    par = torch.as_tensor(np.maximum(clip.parents, 0))
    new_world, new_rest_world = rot @ q, rest_rot @ q
    local = new_world[:, par].transpose(-1, -2) @ new_world
    local[:, 0] = new_world[:, 0]
    rest_local = new_rest_world[par].transpose(-1, -2) @ new_rest_world
    rest_local[0] = new_rest_world[0]
    offsets = (new_rest_world[par].transpose(-1, -2) @ torch.from_numpy(clip.rest_offsets)[..., None])[..., 0]
    offsets[0] = torch.from_numpy(clip.rest_offsets[0])
    to_mixamo = {v: "mixamorig:" + k for k, v in MIXAMO.items()}
    names = tuple(to_mixamo.get(n, "extra_" + n) for n in clip.joint_names)
    return replace(
        clip,
        joint_names=names,
        rest_rotations=matrix_to_quaternion(rest_local).numpy(),
        rotations=matrix_to_quaternion(local).numpy(),
        rest_offsets=offsets.numpy(),
    )


# --------------------------------------------------------------------------- clip editing
def test_fk_matches_a_hand_computed_chain() -> None:
    clip = spinning_clip()
    _, pos = clip.global_transforms()
    k = 3  # 30°
    np.testing.assert_allclose(pos[k, 1], [0.8, 1, 0], atol=1e-12)  # its own rotation does not move it
    np.testing.assert_allclose(
        pos[k, 2], [0.8 + 0.5 * np.cos(np.pi / 6), 1 + 0.5 * np.sin(np.pi / 6), 0], atol=1e-12
    )
    rest_rot, rest_pos = clip.rest_transforms()
    np.testing.assert_allclose(rest_pos, [[0, 1, 0], [0.5, 1, 0], [1, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(rest_rot, np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)


def test_fk_agrees_with_the_body_kinematics_on_smpl_clips() -> None:
    clip = random_pose_clip()
    rot, pos = clip.global_transforms()
    local = quaternion_to_matrix(torch.from_numpy(clip.rotations))
    template = torch.from_numpy(clip.rest_transforms()[1]).expand(clip.num_frames, -1, -1)
    world = forward_kinematics(local, template, SMPLX_PARENTS)
    offset = torch.from_numpy(clip.root_translation - clip.rest_offsets[0])[:, None]
    np.testing.assert_allclose(pos, (world[..., :3, 3] + offset).numpy(), atol=1e-10)
    np.testing.assert_allclose(rot, world[..., :3, :3].numpy(), atol=1e-10)


def test_resample_slerps_rotations_and_lerps_translation() -> None:
    clip = spinning_clip(frames=9, fps=8.0)  # 1 s of motion from frame 0 to frame 8
    up = clip.resample(16.0)
    assert up.num_frames == 17 and up.fps == 16.0
    np.testing.assert_allclose(angle_of(up.rotations[:, 1]), 5.0 * np.arange(17), atol=1e-9)
    np.testing.assert_allclose(up.root_translation[:, 0], 0.05 * np.arange(17), atol=1e-12)
    down = clip.resample(4.0)
    assert down.num_frames == 5
    np.testing.assert_allclose(angle_of(down.rotations[:, 1]), 20.0 * np.arange(5), atol=1e-9)
    odd = clip.resample(6.0)  # non-integer ratio: time k/6 s → 10° * 8k/6
    np.testing.assert_allclose(angle_of(odd.rotations[:, 1]), 80.0 / 6 * np.arange(odd.num_frames), atol=1e-9)
    with pytest.raises(UserError):
        clip.resample(0)


def test_trim_in_seconds_and_frames() -> None:
    clip = spinning_clip(frames=9, fps=8.0)
    assert clip.trim(0.25, 0.75).num_frames == 4  # frames 2..5
    np.testing.assert_allclose(angle_of(clip.trim(0.25, 0.75).rotations[0, 1]), 20.0)
    assert clip.trim(start=3, unit="frames").num_frames == 6
    assert clip.trim(end=2, unit="frames").num_frames == 2
    with pytest.raises(UserError, match="leaves no frames"):
        clip.trim(5.0, 6.0)


def test_loop_repeats_and_continues_root_travel() -> None:
    clip = spinning_clip(frames=9, fps=8.0)
    looped = clip.loop(3)
    assert looped.num_frames == 27
    np.testing.assert_allclose(looped.rotations[9:18], clip.rotations)
    steps = np.diff(looped.root_translation[:, 0])
    np.testing.assert_allclose(steps, 0.1, atol=1e-12)  # constant speed across the seams
    np.testing.assert_allclose(looped.root_translation[:, 1], 1.0)
    with pytest.raises(UserError):
        clip.loop(0)


def test_loop_drops_the_repeated_closing_frame_of_a_cycle() -> None:
    clip = spinning_clip(frames=37, fps=8.0)  # 0°..360°: the last pose equals the first
    looped = clip.loop(2)
    assert looped.num_frames == 36 * 2 + 1
    np.testing.assert_allclose(np.diff(looped.root_translation[:, 0]), 0.1, atol=1e-12)
    angles = np.unwrap(np.deg2rad(angle_of(looped.rotations[:, 1])), period=2 * np.pi)
    np.testing.assert_allclose(np.abs(np.diff(np.rad2deg(angles))), 10.0, atol=1e-6)


def test_in_place_removes_horizontal_travel_only() -> None:
    clip = walk_clip()
    still = clip.in_place()
    np.testing.assert_allclose(
        still.root_translation[:, [0, 2]], clip.root_translation[:1, [0, 2]].repeat(clip.num_frames, 0)
    )
    np.testing.assert_allclose(still.root_translation[:, 1], clip.root_translation[:, 1])
    assert np.ptp(clip.root_translation[:, 2]) > 1.0


def test_clip_rejects_inconsistent_arrays() -> None:
    clip = spinning_clip()
    with pytest.raises(ValueError, match="parents"):
        replace(clip, parents=np.array([0, -1]))
    with pytest.raises(ValueError, match="NaN"):
        replace(clip, rotations=np.full_like(clip.rotations, np.nan))
    with pytest.raises(ValueError, match="fps"):
        replace(clip, fps=0.0)


# --------------------------------------------------------------------------- retargeting
def test_smpl_clip_onto_its_own_t_pose_copies_rotations() -> None:
    clip = random_pose_clip()
    motion = retarget(clip, Skeleton.t_pose())
    want = quaternion_to_matrix(torch.from_numpy(clip.rotations))
    got = axis_angle_to_matrix(motion.pose.double())
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    errors = bone_direction_errors(clip, motion, Skeleton.t_pose())
    assert errors.max < 0.01 and len(errors.bones) == 54


def test_t_pose_source_drives_an_a_pose_target_without_twist() -> None:
    body = Skeleton.a_pose(45.0)
    rest = walk_clip()
    rest = replace(rest, rotations=rest.rest_rotations[None], root_translation=rest.rest_offsets[:1])
    motion = retarget(rest, body)
    rot = axis_angle_to_matrix(motion.pose[0].double())
    world = forward_kinematics(rot[None], body.rest_joints.double()[None], SMPLX_PARENTS)[0]
    _, source = rest.rest_transforms()
    for side in ("left", "right"):
        s, e, w = (JOINT_INDEX[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist"))
        for a, b in ((s, e), (e, w)):  # the arm is lifted back into the source's T-pose
            got = world[b, :3, 3] - world[a, :3, 3]
            want = torch.from_numpy(source[b] - source[a])
            assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 1 - 1e-9
        # by a minimal rotation (no twist): its axis is perpendicular to the bone
        axis = motion.pose[0, s].double()
        assert axis.norm().item() == pytest.approx(np.deg2rad(45), abs=0.02)
        bone = body.rest_joints[e].double() - body.rest_joints[s].double()
        assert abs(torch.dot(axis / axis.norm(), bone / bone.norm())) < 1e-6
    legs = [JOINT_INDEX[n] for n in ("left_hip", "right_hip", "left_knee", "right_knee", "spine1", "neck")]
    assert motion.pose[0, legs].abs().max() < 1e-6  # nothing else moves


@pytest.mark.parametrize("target", ["t_pose", "a_pose"])
def test_random_motion_is_reproduced_bone_for_bone(target: str) -> None:
    body = getattr(Skeleton, target)()
    clip = random_pose_clip()
    errors = bone_direction_errors(clip, retarget(clip, body), body)
    assert errors.max < 0.05, dict(zip(errors.bones, errors.degrees.max(0).round(2), strict=True))


def test_result_does_not_depend_on_the_source_bone_frames_or_names() -> None:
    """A Mixamo-named rig with arbitrary FBX-style bone orientations retargets identically."""
    body = Skeleton.a_pose()
    clip = random_pose_clip()
    foreign = rebased(clip)
    _, pos_a = clip.global_transforms()
    _, pos_b = foreign.global_transforms()
    np.testing.assert_allclose(pos_a, pos_b, atol=1e-10)  # same motion, different bone frames
    ours, theirs = retarget(clip, body), retarget(foreign, body)
    mapped = sorted(theirs.joint_map)
    assert len(mapped) == 52  # Mixamo covers all but jaw and eyes
    rot_a = axis_angle_to_matrix(ours.pose[:, mapped].double())
    rot_b = axis_angle_to_matrix(theirs.pose[:, mapped].double())
    np.testing.assert_allclose(rot_a.numpy(), rot_b.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours.transl.numpy(), theirs.transl.numpy(), atol=1e-5)


def test_root_translation_scales_with_leg_length_and_can_stay_in_place() -> None:
    clip = walk_clip()
    small = Skeleton(Skeleton.t_pose().rest_joints * 0.5)
    full, half = retarget(clip, Skeleton.t_pose()), retarget(clip, small)
    travel = clip.root_translation[-1, 2] - clip.root_translation[0, 2]
    assert full.transl[-1, 2].item() == pytest.approx(travel, rel=1e-5)
    assert half.transl[-1, 2].item() == pytest.approx(travel / 2, rel=1e-5)
    assert half.transl[:, 1].numpy() == pytest.approx(full.transl[:, 1].numpy() / 2, abs=1e-6)
    assert full.transl[0].abs().max() < 0.03  # starts at the origin, feet on the body's floor
    override = retarget(clip, Skeleton.t_pose(), rest_joints=small.rest_joints)  # a shaped avatar
    np.testing.assert_allclose(override.transl.numpy(), half.transl.numpy(), atol=1e-6)
    still = retarget(clip, small, in_place=True)
    assert still.transl[:, [0, 2]].abs().max() == 0
    np.testing.assert_allclose(still.transl[:, 1], half.transl[:, 1])


def test_retargeted_body_stands_on_its_floor() -> None:
    body = Skeleton.a_pose()
    motion = retarget(walk_clip(), body)
    rot = axis_angle_to_matrix(motion.pose.double())
    world = forward_kinematics(
        rot, body.rest_joints.double().expand(motion.num_frames, -1, -1), SMPLX_PARENTS
    )
    lowest = (world[..., :3, 3] + motion.transl.double()[:, None])[..., 1].min()
    assert lowest.item() == pytest.approx(body.rest_joints[:, 1].min().item(), abs=1e-4)


def test_mapping_file_and_errors(tmp_path: Path) -> None:
    clip = random_pose_clip(frames=2)
    custom = replace(clip, joint_names=tuple(f"bone{i:02d}" for i in range(55)))
    with pytest.raises(InputFileError, match=r"custom\.bvh: none of its 55 joints"):
        retarget(replace(custom, source="custom.bvh"), Skeleton.t_pose())
    table = tmp_path / "rig.json"
    table.write_text(json.dumps({f"bone{i:02d}": n for i, n in enumerate(SMPLX_JOINT_NAMES)}))
    via_file = retarget(custom, Skeleton.t_pose(), mapping=table)
    direct = retarget(clip, Skeleton.t_pose())
    np.testing.assert_allclose(via_file.pose.numpy(), direct.pose.numpy(), atol=1e-6)
    yaml_file = tmp_path / "rig.yaml"
    yaml_file.write_text("bone00: pelvis\nbone03: spine1\n")
    assert len(retarget(custom, Skeleton.t_pose(), mapping=yaml_file).joint_map) == 2
    with pytest.raises(UserError, match="unknown target joint"):
        retarget(custom, Skeleton.t_pose(), mapping={"bone00": "hips"})
    with pytest.raises(InputFileError, match="no joint maps to the pelvis"):
        retarget(custom, Skeleton.t_pose(), mapping={"bone03": "spine1"})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputFileError, match=r"broken\.json is not valid JSON"):
        retarget(custom, Skeleton.t_pose(), mapping=broken)


def test_builtin_maps_pick_the_right_rig() -> None:
    cmu = [
        "Hips",
        "LHipJoint",
        "LeftHip",
        "LeftKnee",
        "lowerback",
        "Chest",
        "LeftCollar",
        "LeftShoulder",
        "LeftElbow",
    ]
    found = match_joints(cmu)
    assert SMPLX_JOINT_NAMES[next(j for j, s in found.items() if cmu[s] == "LeftShoulder")] == "left_shoulder"
    mixamo = ["Hips", "Spine", "LeftUpLeg", "LeftShoulder", "LeftArm", "LeftForeArm"]  # no namespace
    found = match_joints(mixamo)
    assert (
        SMPLX_JOINT_NAMES[next(j for j, s in found.items() if mixamo[s] == "LeftShoulder")] == "left_collar"
    )
    prefixed = ["mixamorig1:" + n for n in mixamo]
    assert match_joints(prefixed) == found
    biped = ["Bip01", "Bip01 Pelvis", "Bip01 L Thigh", "Bip01 L Calf", "Bip01 R UpperArm"]
    assert {SMPLX_JOINT_NAMES[j] for j in match_joints(biped)} == {
        "pelvis",
        "left_hip",
        "left_knee",
        "right_shoulder",
    }
    unreal = ["root", "pelvis", "spine_01", "thigh_l", "calf_r", "upperarm_l"]
    found = match_joints(unreal)
    assert {SMPLX_JOINT_NAMES[j] for j in found} == {
        "pelvis",
        "spine1",
        "left_hip",
        "right_knee",
        "left_shoulder",
    }


@pytest.mark.parametrize(
    "name", ["cmu_131_02.bvh", "mixamo_Kicking_Left.fbx", "aistpp_smpl_sequence_sample.pkl"]
)
def test_real_clips_retarget_faithfully_onto_an_a_pose_skeleton(name: str) -> None:
    path = MOTIONS / name
    if not path.is_file():
        pytest.skip(f"shared test data {path} is not available")
    clip = load_motion(path)
    if clip.num_frames > 200:
        clip = clip.trim(end=200, unit="frames")
    body = Skeleton.a_pose()
    motion = retarget(clip, body)
    assert motion.pose.shape == (clip.num_frames, 55, 3) and torch.isfinite(motion.pose).all()
    errors = bone_direction_errors(clip, motion, body)
    good = errors.transferable()
    assert len(good.bones) >= 16
    assert good.mean < 0.5 and good.p95 < 2.0
    # the only bones that cannot match are siblings whose rest directions differ structurally
    assert all(
        b.split("→")[0] in ("pelvis", "spine3", "left_wrist", "right_wrist")
        for b in errors.proportion_limited
    )
    # ...and those move exactly like their source bones: the targets, all bones
    aligned = errors.rest_aligned()
    assert len(aligned.bones) == len(errors.bones)
    assert aligned.mean <= 4.0 and aligned.p95 <= 10.0


def test_rest_aligned_error_catches_a_wrong_pelvis_twist() -> None:
    """Twisting the retargeted pelvis about its spine leaves pelvis→spine1 (and so the
    transferable bones' error) untouched, but the hips then swing the wrong way: the
    rest-aligned score of the proportion-limited pelvis→hip bones must show it."""
    path = MOTIONS / "cmu_131_02.bvh"
    if not path.is_file():
        pytest.skip(f"shared test data {path} is not available")
    clip = load_motion(path).trim(end=40, unit="frames")
    body = Skeleton.a_pose()
    motion = retarget(clip, body)
    honest = bone_direction_errors(clip, motion, body)
    assert "pelvis→left_hip" in honest.proportion_limited
    pelvis = JOINT_INDEX["pelvis"]
    spine = (body.rest_joints[JOINT_INDEX["spine1"]] - body.rest_joints[pelvis]).double()
    twist = axis_angle_to_matrix((spine / spine.norm() * np.deg2rad(20.0))[None])[0]
    world = axis_angle_to_matrix(motion.pose[:, pelvis].double())
    pose = motion.pose.clone()
    pose[:, pelvis] = matrix_to_axis_angle(world @ twist).to(pose.dtype)
    wrong = bone_direction_errors(clip, replace(motion, pose=pose), body)
    hip = honest.bones.index("pelvis→left_hip")
    assert honest.rest_aligned().degrees[:, hip].max() < 0.5
    assert wrong.rest_aligned().degrees[:, hip].min() > 5.0
    # the raw angle of that bone barely notices (it is dominated by the proportion offset)
    assert abs(wrong.degrees[:, hip].mean() - honest.degrees[:, hip].mean()) < 20.0


def test_procedural_wave_raises_the_right_hand() -> None:
    clip = wave_clip()
    _, pos = clip.global_transforms()
    head, wrist = JOINT_INDEX["head"], JOINT_INDEX["right_wrist"]
    assert (pos[:, wrist, 1] > pos[:, head, 1]).all()
    assert np.ptp(pos[:, wrist, 0]) > 0.1  # it actually waves sideways
    assert pos[0, wrist, 0] < 0  # the right hand is on −X


# ------------------------------------------------------------------------ real body models
def test_retarget_onto_anny_poses_the_mesh(anny_body) -> None:
    body = anny_body
    clip = walk_clip()
    motion = retarget(clip, body)
    errors = bone_direction_errors(clip, motion, body)
    good = errors.transferable()
    assert len(good.bones) >= 30 and good.mean < 0.5 and good.p95 < 2.0
    out = body(pose=motion.pose[::8], transl=motion.transl[::8])
    verts = out.vertices.detach()
    assert torch.isfinite(verts).all()
    rest_floor = body.rest().vertices[0, :, 1].min().item()
    assert (verts[..., 1].amin(1) - rest_floor).abs().max() < 0.08  # walking on (near) its own floor
    # the walk travels forward (+Z), scaled by the leg-length ratio
    assert motion.transl[-1, 2] > 0.8


def test_retarget_onto_a_t_pose_smplx_body(smplx_dir) -> None:
    from avatarcli.body import load_body

    body = load_body("smplx", model_dir=smplx_dir)
    clip = random_pose_clip()
    motion = retarget(clip, body)
    good = bone_direction_errors(clip, motion, body).transferable()
    assert good.mean < 0.5 and good.p95 < 2.0
    out = body(pose=motion.pose, transl=motion.transl)
    assert out.joints.shape == (clip.num_frames, 55, 3) and torch.isfinite(out.joints).all()
