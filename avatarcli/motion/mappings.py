"""Source-rig joint names → canonical SMPL-X joint names.

Built-in maps cover Mixamo (with or without the ``mixamorig:`` namespace; also the
MotionBuilder-style names many BVH files use), CMU BVH in cgspeed's naming, CMU ASF-style
names, 3ds Max Biped, the Unreal mannequin, and SMPL / SMPL-X names. The map matching the
most joints wins, because rigs reuse names for different bones (Mixamo's ``LeftShoulder``
is the collar, CMU's the upper arm).
Other rigs: a JSON or YAML file ``{source_name: smplx_joint_name}``.

Names are compared after dropping namespaces (``a:b|c`` → ``c``), SMPL's FBX prefixes
(``m_avg_``/``f_avg_``) and case, spaces, underscores and dots.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from avatarcli.body.joints import JOINT_INDEX, SMPLX_JOINT_NAMES
from avatarcli.errors import InputFileError, UserError

_FINGERS = ("Index", "Middle", "Ring", "Pinky", "Thumb")


def _both_sides(left: dict[str, str]) -> dict[str, str]:
    out = dict(left)
    for src, dst in left.items():
        if "Left" in src or dst.startswith("left_"):
            out[src.replace("Left", "Right").replace("LHip", "RHip")] = dst.replace("left_", "right_")
    return out


MIXAMO: dict[str, str] = _both_sides(
    {
        "Hips": "pelvis",
        "Spine": "spine1",
        "Spine1": "spine2",
        "Spine2": "spine3",
        "Neck": "neck",
        "Head": "head",
        "LeftUpLeg": "left_hip",
        "LeftLeg": "left_knee",
        "LeftFoot": "left_ankle",
        "LeftToeBase": "left_foot",
        "LeftShoulder": "left_collar",
        "LeftArm": "left_shoulder",
        "LeftForeArm": "left_elbow",
        "LeftHand": "left_wrist",
        **{f"LeftHand{f}{k}": f"left_{f.lower()}{k}" for f in _FINGERS for k in (1, 2, 3)},
    }
)

CMU_CGSPEED: dict[str, str] = _both_sides(
    {
        "Hips": "pelvis",
        "lowerback": "spine1",
        "Chest": "spine2",
        "Chest2": "spine3",
        "Neck": "neck",
        "Head": "head",
        "LeftHip": "left_hip",
        "LeftKnee": "left_knee",
        "LeftAnkle": "left_ankle",
        "LeftToe": "left_foot",
        "LeftCollar": "left_collar",
        "LeftShoulder": "left_shoulder",
        "LeftElbow": "left_elbow",
        "LeftWrist": "left_wrist",
    }
)

CMU_ASF: dict[str, str] = {
    "root": "pelvis",
    "lowerback": "spine1",
    "upperback": "spine2",
    "thorax": "spine3",
    "lowerneck": "neck",
    "head": "head",
    **{
        f"{s}{bone}": f"{side}_{joint}"
        for s, side in (("l", "left"), ("r", "right"))
        for bone, joint in (
            ("femur", "hip"),
            ("tibia", "knee"),
            ("foot", "ankle"),
            ("toes", "foot"),
            ("clavicle", "collar"),
            ("humerus", "shoulder"),
            ("radius", "elbow"),
            ("wrist", "wrist"),
        )
    },
}

#: 3ds Max Biped (also many game BVH/FBX exports): "Bip01 L Thigh", ...
BIPED: dict[str, str] = {
    "Bip01 Pelvis": "pelvis",
    "Bip01 Spine": "spine1",
    "Bip01 Spine1": "spine2",
    "Bip01 Spine2": "spine3",
    "Bip01 Neck": "neck",
    "Bip01 Head": "head",
    **{
        f"Bip01 {s} {bone}": f"{side}_{joint}"
        for s, side in (("L", "left"), ("R", "right"))
        for bone, joint in (
            ("Thigh", "hip"),
            ("Calf", "knee"),
            ("Foot", "ankle"),
            ("Toe0", "foot"),
            ("Clavicle", "collar"),
            ("UpperArm", "shoulder"),
            ("Forearm", "elbow"),
            ("Hand", "wrist"),
        )
    },
}

#: Unreal Engine mannequin: pelvis, spine_01, thigh_l, upperarm_l, ...
UNREAL: dict[str, str] = {
    "pelvis": "pelvis",
    "spine_01": "spine1",
    "spine_02": "spine2",
    "spine_03": "spine3",
    "neck_01": "neck",
    "head": "head",
    **{
        f"{bone}_{s}": f"{side}_{joint}"
        for s, side in (("l", "left"), ("r", "right"))
        for bone, joint in (
            ("thigh", "hip"),
            ("calf", "knee"),
            ("foot", "ankle"),
            ("ball", "foot"),
            ("clavicle", "collar"),
            ("upperarm", "shoulder"),
            ("lowerarm", "elbow"),
            ("hand", "wrist"),
        )
    },
}

SMPL: dict[str, str] = {
    **{n: n for n in SMPLX_JOINT_NAMES},
    "left_eye": "left_eye_smplhf",
    "right_eye": "right_eye_smplhf",
    # SMPL's own FBX/Unity naming: Pelvis, L_Hip, Spine1, ..., L_Wrist
    **{
        re.sub(r"^(left|right)_", lambda m: m.group(1)[0].upper() + "_", n).title().replace("Smplhf", ""): n
        for n in SMPLX_JOINT_NAMES[:22]
    },
}

BUILTIN_MAPS: dict[str, dict[str, str]] = {
    "mixamo": MIXAMO,
    "cmu_cgspeed": CMU_CGSPEED,
    "cmu_asf": CMU_ASF,
    "biped": BIPED,
    "unreal": UNREAL,
    "smpl": SMPL,
}


def normalize_name(name: str) -> str:
    """Comparable form of a joint name: no namespace, no SMPL prefix, lower-case alphanumerics."""
    name = re.split(r"[:|]", name)[-1]
    name = re.sub(r"^[mf]_avg_", "", name)
    return re.sub(r"[^0-9a-z]", "", name.lower())


def load_mapping_file(path: str | os.PathLike) -> dict[str, str]:
    """Read a ``{source_name: smplx_joint_name}`` JSON or YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot read joint mapping file {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError / yaml.YAMLError
        raise InputFileError(
            f"joint mapping file {path} is not valid {path.suffix[1:].upper()}: {exc}"
        ) from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise InputFileError(
            f"joint mapping file {path} must be a flat {{source_name: smplx_joint_name}} table"
        )
    return data


def validate_mapping(mapping: Mapping[str, str], origin: str = "joint mapping") -> dict[str, str]:
    bad = sorted({v for v in mapping.values() if v not in JOINT_INDEX})
    if bad:
        raise UserError(
            f"{origin}: unknown target joint(s) {', '.join(bad[:5])}; targets must be SMPL-X joint names "
            f"such as {', '.join(SMPLX_JOINT_NAMES[:4])}"
        )
    return dict(mapping)


def match_joints(
    source_names: Sequence[str],
    mapping: Mapping[str, str] | str | os.PathLike | None = None,
    *,
    source: str = "the motion",
) -> dict[int, int]:
    """{canonical joint index: source joint index} for the best-fitting (or the given) map."""
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = validate_mapping(load_mapping_file(mapping), str(mapping))
    elif mapping is not None:
        mapping = validate_mapping(mapping)
    candidates = [mapping] if mapping is not None else list(BUILTIN_MAPS.values())
    best: dict[int, int] = {}
    for table in candidates:
        found = _apply(table, source_names)
        if len(found) > len(best):
            best = found
    if not best:
        raise InputFileError(
            f"{source}: none of its {len(source_names)} joints ({', '.join(list(source_names)[:4])}, ...) "
            "match a known rig (Mixamo, CMU BVH, SMPL/SMPL-X); pass a joint mapping file "
            "{source_name: smplx_joint_name}"
        )
    if JOINT_INDEX["pelvis"] not in best:
        raise InputFileError(
            f"{source}: no joint maps to the pelvis/hips, so the body cannot be placed; add it to the "
            "joint mapping"
        )
    return best


def _apply(table: Mapping[str, str], source_names: Sequence[str]) -> dict[int, int]:
    exact = {name: i for i, name in enumerate(source_names)}
    loose: dict[str, int] = {}
    for i, name in enumerate(source_names):
        loose.setdefault(normalize_name(name), i)
    out: dict[int, int] = {}
    for src, dst in table.items():
        i = exact.get(src, loose.get(normalize_name(src)))
        if i is not None and JOINT_INDEX[dst] not in out:
            out[JOINT_INDEX[dst]] = i
    return out
