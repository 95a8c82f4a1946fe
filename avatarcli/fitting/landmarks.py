"""Where each canonical 2D keypoint sits on a body model: a joint, or a mesh vertex.

Joint-like keypoints (shoulders, elbows, hips, ...) use the body's canonical joints. Points on
the surface (nose, ears, toes, heels; eyes when the backend has no eye joints; finger tips)
use vertex ids picked *from the body's own rest mesh* by simple geometric rules ("the most
forward head vertex" for the nose), so every backend of the protocol works without a
hand-made table. Picks are cached per body object.

OpenPose/mediapipe hips sit lower and wider than SMPL-style hip joints; they get a lower
weight in :data:`BODY_KEYPOINT_WEIGHTS` rather than a fake offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarcli.body.joints import JOINT_INDEX
from avatarcli.perception.keypoints import BODY_KEYPOINT_NAMES, HAND_KEYPOINT_NAMES, NUM_BODY_KEYPOINTS

#: canonical body keypoint → canonical joint, for points that are joint centres
JOINT_KEYPOINTS: dict[str, str] = {
    "neck": "neck", "mid_hip": "pelvis",
    **{f"{s}_{p}": f"{s}_{j}" for s in ("left", "right") for p, j in (
        ("shoulder", "shoulder"), ("elbow", "elbow"), ("wrist", "wrist"), ("hip", "hip"),
        ("knee", "knee"), ("ankle", "ankle"))},
}  # fmt: skip

#: relative trust in each keypoint (multiplied by the detector's confidence)
BODY_KEYPOINT_WEIGHTS: dict[str, float] = {
    **{n: 1.0 for n in BODY_KEYPOINT_NAMES},
    "mid_hip": 0.5, "left_hip": 0.6, "right_hip": 0.6, "neck": 0.7,
    "left_ear": 0.5, "right_ear": 0.5, "left_small_toe": 0.5, "right_small_toe": 0.5,
}  # fmt: skip

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


@dataclass
class LandmarkMap:
    """Indices that turn a body output into (B, K, 3) 3D landmarks for K 2D keypoints."""

    joint_ids: torch.Tensor  # (K,) canonical joint id, -1 where a vertex is used
    vertex_ids: torch.Tensor  # (K,) vertex id, -1 where a joint is used
    weights: torch.Tensor  # (K,) relative trust

    def gather(self, vertices: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) vertices and (B, 55, 3) joints → (B, K, 3) landmark positions."""
        use_joint = (self.joint_ids >= 0).to(vertices.device)
        from_joints = joints[:, self.joint_ids.clamp_min(0)]
        from_verts = vertices[:, self.vertex_ids.clamp_min(0)]
        return torch.where(use_joint[None, :, None], from_joints, from_verts)


def _dominant_joint(body) -> torch.Tensor:
    return body.skin_weights.argmax(1)


def _pick(scores: torch.Tensor, candidates: torch.Tensor) -> int:
    """Vertex id with the highest score among ``candidates`` (a bool mask)."""
    masked = torch.where(candidates, scores, torch.full_like(scores, -torch.inf))
    return int(masked.argmax())


def _surface_vertices(body) -> dict[str, int]:
    """Geometric vertex picks on the rest mesh (Y-up, facing +Z, left = +X)."""
    with torch.no_grad():
        out = body.rest(body.default_shape(1))
        v = out.vertices[0].float()
        j = out.joints[0].float()
    dom = _dominant_joint(body)
    x, y, z = v.unbind(1)
    picks: dict[str, int] = {}
    head_ids = [JOINT_INDEX[n] for n in ("head", "jaw", "left_eye_smplhf", "right_eye_smplhf")]
    head = torch.isin(dom, torch.tensor(head_ids, device=dom.device))
    head_center = j[JOINT_INDEX["head"]]
    head_top = float(y[head].max())
    head_size = head_top - float(j[JOINT_INDEX["neck"]][1])
    near_mid = (x - head_center[0]).abs() < 0.1 * head_size
    picks["nose"] = _pick(z, head & near_mid)
    nose = v[picks["nose"]]
    eye_y = float(nose[1]) + 0.15 * head_size
    if bool(body.joint_valid[JOINT_INDEX["left_eye_smplhf"]]):
        eye_y = float(j[JOINT_INDEX["left_eye_smplhf"], 1])
    at_eye_level = (y - eye_y).abs() < 0.08 * head_size
    for side, sign in (("left", 1.0), ("right", -1.0)):
        picks[f"{side}_ear"] = _pick(sign * x, head & at_eye_level)
        off = sign * (x - head_center[0])
        eye_band = head & at_eye_level & (off > 0.06 * head_size) & (off < 0.25 * head_size)
        picks[f"{side}_eye"] = _pick(z, eye_band)
        foot_ids = [JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]]
        foot = torch.isin(dom, torch.tensor(foot_ids, device=dom.device))
        sole = foot & (y < float(y[foot].min()) + 0.035)
        toe_zone = sole & (z > float(z[sole].max()) - 0.04)
        medial = -sign * (x - float(x[foot].mean()))  # towards the body's mid-line
        picks[f"{side}_big_toe"] = _pick(medial + 0.5 * z, toe_zone)
        picks[f"{side}_small_toe"] = _pick(-medial + 0.5 * z, toe_zone)
        picks[f"{side}_heel"] = _pick(-z, sole)
        for finger in _FINGERS:
            tip_joint = JOINT_INDEX[f"{side}_{finger}3"]
            base = j[JOINT_INDEX[f"{side}_{finger}2"]]
            direction = torch.nn.functional.normalize(j[tip_joint] - base, dim=0)
            on_finger = dom == tip_joint
            if not bool(on_finger.any()):
                on_finger = (v - j[tip_joint]).norm(dim=1) < 0.03
            picks[f"{side}_{finger}4"] = _pick((v - j[tip_joint]) @ direction, on_finger)
    return picks


_CACHE: dict[int, dict[str, int]] = {}


def surface_vertices(body) -> dict[str, int]:
    """Cached :func:`_surface_vertices` (keyed by the body object)."""
    key = id(body)
    if key not in _CACHE:
        _CACHE[key] = _surface_vertices(body)
    return _CACHE[key]


def body_landmark_map(body) -> LandmarkMap:
    """Landmarks for the 25 canonical body keypoints."""
    picks = surface_vertices(body)
    joint_ids, vertex_ids, weights = [], [], []
    for name in BODY_KEYPOINT_NAMES:
        joint = JOINT_KEYPOINTS.get(name)
        if name.endswith("_eye") and bool(body.joint_valid[JOINT_INDEX[f"{name[:-4]}_eye_smplhf"]]):
            joint = f"{name[:-4]}_eye_smplhf"
        joint_ids.append(JOINT_INDEX[joint] if joint else -1)
        vertex_ids.append(-1 if joint else picks[name])
        weights.append(BODY_KEYPOINT_WEIGHTS[name])
    assert len(joint_ids) == NUM_BODY_KEYPOINTS
    return LandmarkMap(torch.tensor(joint_ids), torch.tensor(vertex_ids), torch.tensor(weights))


def hand_landmark_map(body, side: str) -> LandmarkMap:
    """Landmarks for the 21 hand keypoints of ``side`` ("left"/"right")."""
    picks = surface_vertices(body)
    joint_ids, vertex_ids = [], []
    for name in HAND_KEYPOINT_NAMES:
        if name == "wrist":
            joint_ids.append(JOINT_INDEX[f"{side}_wrist"])
            vertex_ids.append(-1)
            continue
        finger, k = name[:-1], int(name[-1])
        if k <= 3:
            joint_ids.append(JOINT_INDEX[f"{side}_{finger}{k}"])
            vertex_ids.append(-1)
        else:
            joint_ids.append(-1)
            vertex_ids.append(picks[f"{side}_{finger}4"])
    return LandmarkMap(torch.tensor(joint_ids), torch.tensor(vertex_ids), torch.ones(len(joint_ids)))
