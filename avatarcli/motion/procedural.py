"""Bundled example motions, keyed procedurally on the canonical SMPL-X skeleton.

``python -m avatarcli.motion.procedural [OUT_DIR]`` regenerates ``examples/motions/*.npz``
(avatarcli clip format). The clips are deterministic functions of time, so they can be
rebuilt bit-for-bit, and they loop seamlessly (``Clip.loop``).

Rotations are local, in world-aligned rest frames on the T-pose template: +X is the body's
left, +Y up, +Z forward. A negative angle about X swings a hanging limb forward; a negative
angle about Z lowers the left arm and raises the right.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from avatarcli.body.kinematics import axis_angle_to_matrix
from avatarcli.motion.clip import Clip
from avatarcli.motion.rotations import matrix_to_quaternion
from avatarcli.motion.skeletons import smplx_template_joints

FPS = 30.0


def _rot(axis: str, degrees: np.ndarray) -> torch.Tensor:
    """(T, 3, 3) rotations about a world axis by per-frame angles in degrees."""
    aa = np.zeros((len(degrees), 3))
    aa[:, "xyz".index(axis)] = np.deg2rad(degrees)
    return axis_angle_to_matrix(torch.from_numpy(aa))


def _clip(name: str, frames: int, local: dict[str, torch.Tensor], root: np.ndarray) -> Clip:
    template = smplx_template_joints()
    parents = np.array(SMPLX_PARENTS)
    offsets = template - template[np.maximum(parents, 0)]
    offsets[0] = template[0]
    rot = torch.eye(3, dtype=torch.float64).repeat(frames, NUM_JOINTS, 1, 1)
    for joint, value in local.items():
        rot[:, JOINT_INDEX[joint]] = value
    return Clip(
        joint_names=SMPLX_JOINT_NAMES,
        parents=parents,
        rest_offsets=offsets,
        rest_rotations=np.tile([1.0, 0, 0, 0], (NUM_JOINTS, 1)),
        rotations=matrix_to_quaternion(rot).numpy(),
        root_translation=template[0] + root,
        fps=FPS,
        source=f"procedural:{name}",
        metadata={"format": "procedural", "name": name},
    )


def wave_clip(seconds: float = 2.0, waves_per_second: float = 1.5) -> Clip:
    """Standing, right forearm up and waving side to side; left arm relaxed."""
    frames = int(round(seconds * FPS))
    t = np.arange(frames) / FPS
    swing = np.sin(2 * np.pi * waves_per_second * t)
    breathe = np.sin(2 * np.pi * t / seconds)
    zeros = np.zeros(frames)
    local = {
        "right_shoulder": _rot("z", zeros - 15),  # upper arm a little above horizontal
        "right_elbow": _rot("z", -85 + 25 * swing),  # forearm up, swinging in the frontal plane
        "right_wrist": _rot("z", 10 * swing),
        "left_shoulder": _rot("z", zeros - 72),  # hanging, slightly away from the body
        "left_elbow": _rot("x", zeros - 10),
        "spine2": _rot("z", 2 * breathe),
        "head": _rot("z", zeros + 6) @ _rot("x", 4 * breathe),  # head tilted towards the wave
    }
    return _clip("wave", frames, local, np.zeros((frames, 3)))


def walk_clip(frames: int = 32, speed_m_s: float = 1.2) -> Clip:
    """One walk cycle (two steps) moving forward along +Z; loops seamlessly."""
    phase = 2 * np.pi * np.arange(frames) / frames
    t = np.arange(frames) / FPS
    zeros = np.zeros(frames)

    def leg(p: np.ndarray) -> dict[str, np.ndarray]:
        hip = -25 * np.sin(p)  # negative = thigh forward
        knee = 5 + 45 * np.clip(np.cos(p), 0, None) ** 2  # flexes in mid-swing
        ankle = 8 * np.sin(p + 0.6)
        return {"hip": hip, "knee": knee, "ankle": ankle}

    left, right = leg(phase), leg(phase + np.pi)
    arm_left, arm_right = 18 * np.sin(phase), 18 * np.sin(phase + np.pi)  # opposite to the leg
    local = {
        "pelvis": _rot("y", 5 * np.sin(phase)),
        "spine2": _rot("y", -4 * np.sin(phase)),
        "left_hip": _rot("x", left["hip"]),
        "left_knee": _rot("x", left["knee"]),
        "left_ankle": _rot("x", left["ankle"]),
        "right_hip": _rot("x", right["hip"]),
        "right_knee": _rot("x", right["knee"]),
        "right_ankle": _rot("x", right["ankle"]),
        "left_shoulder": _rot("x", arm_left) @ _rot("z", zeros - 75),
        "right_shoulder": _rot("x", arm_right) @ _rot("z", zeros + 75),
        "left_elbow": _rot("x", -12 + 8 * np.sin(phase)),
        "right_elbow": _rot("x", -12 + 8 * np.sin(phase + np.pi)),
    }
    root = np.zeros((frames, 3))
    root[:, 1] = 0.02 * np.cos(2 * phase) - 0.02  # lowest at mid-stance, two bobs per cycle
    root[:, 2] = speed_m_s * t
    return _clip("walk", frames, local, root)


BUNDLED: dict[str, Callable[[], Clip]] = {"wave": wave_clip, "walk": walk_clip}


def write_examples(out_dir: str | Path) -> list[Path]:
    """Write every bundled clip as ``OUT_DIR/<name>.npz``."""
    from avatarcli.motion.npz_format import save_clip

    out = Path(out_dir)
    return [save_clip(make(), out / f"{name}.npz") for name, make in BUNDLED.items()]


def main(argv: list[str]) -> int:
    out = argv[0] if argv else str(Path(__file__).resolve().parents[2] / "examples" / "motions")
    for path in write_examples(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
