"""Binary glTF 2.0 (``.glb``): one skinned, textured mesh with its skeleton and an optional clip.

Why our own writer: trimesh writes textured meshes but not skins or animations, and no other
dependency does. The subset written here is what Blender, three.js and Unity's importers read:
a triangle mesh with POSITION / NORMAL / TEXCOORD_0 / JOINTS_0 / WEIGHTS_0 (four influences;
eight with JOINTS_1 / WEIGHTS_1, which Blender reads and three.js ignores),
a skin whose joints are a node hierarchy (rest offsets as translations, identity rotations),
one PNG base-colour texture, optional morph targets (position deltas at rest, e.g. pose-corrective
shapes baked for a clip; stored sparsely where they move few vertices), and one animation (a
rotation channel per joint, LINEAR, plus the root's translation and, with morph targets, their
weights). :func:`read_glb` and :func:`pose_glb` read that subset back, so the file's own data can
be checked against the body it came from.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MAGIC, _VERSION = 0x46546C67, 2
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {_FLOAT: np.float32, _UBYTE: np.uint8, _UINT: np.uint32}


@dataclass
class SkinnedMesh:
    """A mesh bound to a skeleton at its rest pose (what a glTF skin describes).

    ``joint_positions`` (J, 3) are the joints at rest in the mesh's frame; each joint's frame
    is world-aligned at rest (SMPL's convention), so a bone is a plain offset from its parent.
    """

    positions: np.ndarray  # (V, 3) float, metres, Y up
    normals: np.ndarray  # (V, 3) float, unit
    uv: np.ndarray  # (V, 2) float, v = 0 at the texture's top row (glTF's convention too)
    triangles: np.ndarray  # (F, 3) int, counter-clockwise seen from outside
    joints: np.ndarray  # (V, 4·k) int, joint indices (k sets of four)
    weights: np.ndarray  # (V, 4·k) float, rows sum to 1
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root; every parent before its children
    joint_positions: np.ndarray  # (J, 3)
    texture_png: bytes
    name: str = "avatar"
    #: (K, V, 3) position deltas at rest, added with the clip's weights before skinning
    morph_targets: np.ndarray | None = None
    morph_names: tuple[str, ...] = ()


@dataclass
class SkeletonClip:
    """Per-frame local joint rotations and root translation, sampled at ``fps``."""

    rotations: np.ndarray  # (T, J, 4) unit quaternions (x, y, z, w), glTF's order
    root_translation: np.ndarray  # (T, 3): the root joint's position in the mesh's frame
    fps: float
    name: str = "motion"
    #: (T, K) weights of the mesh's morph targets per frame
    morph_weights: np.ndarray | None = None


class _Buffer:
    """Collects bufferViews and accessors into one little-endian binary chunk."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, payload: bytes, target: int | None = None) -> int:
        self.data.extend(b"\0" * (-len(self.data) % 4))  # every view starts 4-byte aligned
        entry = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(payload)}
        if target is not None:
            entry["target"] = target
        self.data.extend(payload)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int, target: int | None = None) -> int:
        array = np.ascontiguousarray(array, dtype=_DTYPES[component])
        count = array.shape[0]
        entry = {
            "bufferView": self.view(array.tobytes(), target),
            "componentType": component,
            "count": int(count),
            "type": kind,
        }
        if kind in ("SCALAR", "VEC3") and component == _FLOAT:  # required for POSITION / times
            flat = array.reshape(count, -1)
            entry["min"] = [float(x) for x in flat.min(0)]
            entry["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def delta_accessor(self, deltas: np.ndarray) -> int:
        """(V, 3) float position deltas; stored sparsely (indices + values of the non-zero rows,
        zeros elsewhere) when at most half the rows move — a corrective that moves a hand only."""
        deltas = np.ascontiguousarray(deltas, dtype=np.float32)
        moved = np.flatnonzero(np.any(deltas != 0, axis=1))
        if len(moved) > len(deltas) // 2:
            return self.accessor(deltas, "VEC3", _FLOAT, _ARRAY_BUFFER)
        entry = {
            "componentType": _FLOAT,
            "count": len(deltas),
            "type": "VEC3",
            "min": [float(x) for x in deltas.min(0)],
            "max": [float(x) for x in deltas.max(0)],
        }
        if len(moved):
            rows = self.view(moved.astype(np.uint32).tobytes())
            entry["sparse"] = {
                "count": len(moved),
                "indices": {"bufferView": rows, "componentType": _UINT},
                "values": {"bufferView": self.view(deltas[moved].tobytes())},
            }
        self.accessors.append(entry)
        return len(self.accessors) - 1


def glb_bytes(mesh: SkinnedMesh, clip: SkeletonClip | None = None, generator: str = "avatarcli") -> bytes:
    """The whole ``.glb`` file for ``mesh`` (and ``clip``) as bytes."""
    n_joints = len(mesh.joint_names)
    if len(mesh.parents) != n_joints or mesh.joint_positions.shape != (n_joints, 3):
        raise ValueError("one parent and one rest position per joint")
    if mesh.joints.max(initial=0) >= n_joints or n_joints > 255:
        raise ValueError("joint indices must address at most 255 joints")
    if mesh.joints.shape != mesh.weights.shape or mesh.joints.shape[1] % 4:
        raise ValueError("joints and weights must be (V, 4·k) alike")
    buf = _Buffer()
    attributes = {
        "POSITION": buf.accessor(mesh.positions, "VEC3", _FLOAT, _ARRAY_BUFFER),
        "NORMAL": buf.accessor(mesh.normals, "VEC3", _FLOAT, _ARRAY_BUFFER),
        "TEXCOORD_0": buf.accessor(mesh.uv, "VEC2", _FLOAT, _ARRAY_BUFFER),
    }
    for k in range(mesh.joints.shape[1] // 4):
        block = slice(4 * k, 4 * k + 4)
        attributes[f"JOINTS_{k}"] = buf.accessor(mesh.joints[:, block], "VEC4", _UBYTE, _ARRAY_BUFFER)
        attributes[f"WEIGHTS_{k}"] = buf.accessor(mesh.weights[:, block], "VEC4", _FLOAT, _ARRAY_BUFFER)
    indices = buf.accessor(mesh.triangles.reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
    primitive: dict = {"attributes": attributes, "indices": indices, "material": 0}
    mesh_entry: dict = {"name": mesh.name, "primitives": [primitive]}
    n_targets = _morph_count(mesh, clip)
    if n_targets:
        primitive["targets"] = [{"POSITION": buf.delta_accessor(target)} for target in mesh.morph_targets]
        mesh_entry["weights"] = [0.0] * n_targets
        names = list(mesh.morph_names) or [f"shape_{k:02d}" for k in range(n_targets)]
        mesh_entry["extras"] = {"targetNames": names}
    rest = np.asarray(mesh.joint_positions, dtype=np.float64)
    inverse_bind = np.tile(np.eye(4), (n_joints, 1, 1))
    inverse_bind[:, :3, 3] = -rest  # the rest frames are translations only
    ibm = buf.accessor(inverse_bind.transpose(0, 2, 1).reshape(n_joints, 16), "MAT4", _FLOAT)  # column-major
    image_view = buf.view(mesh.texture_png)

    nodes: list[dict] = []
    for j, (name, parent) in enumerate(zip(mesh.joint_names, mesh.parents, strict=True)):
        offset = rest[j] - (rest[parent] if parent >= 0 else 0.0)
        nodes.append({"name": name, "translation": [float(x) for x in offset]})
    for j, parent in enumerate(mesh.parents):
        if parent >= 0:
            nodes[parent].setdefault("children", []).append(j)
    roots = [j for j, p in enumerate(mesh.parents) if p < 0]
    nodes.append({"name": mesh.name, "mesh": 0, "skin": 0})
    document: dict = {
        "asset": {"version": "2.0", "generator": generator},
        "scene": 0,
        "scenes": [{"nodes": [n_joints, *roots]}],
        "nodes": nodes,
        "meshes": [mesh_entry],
        "skins": [{"joints": list(range(n_joints)), "inverseBindMatrices": ibm, "skeleton": roots[0]}],
        "materials": [
            {
                "name": f"{mesh.name}_texture",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 1.0,
                },
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": image_view, "mimeType": "image/png"}],
    }
    if clip is not None:
        document["animations"] = [_animation(buf, clip, n_joints, roots[0], mesh_node=n_joints)]
    document["buffers"] = [{"byteLength": len(buf.data)}]
    document["bufferViews"] = buf.views
    document["accessors"] = buf.accessors
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = bytes(buf.data) + b"\0" * (-len(buf.data) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", _MAGIC, _VERSION, total),
            struct.pack("<II", len(text), _JSON_CHUNK),
            text,
            struct.pack("<II", len(binary), _BIN_CHUNK),
            binary,
        ]
    )


def _morph_count(mesh: SkinnedMesh, clip: SkeletonClip | None) -> int:
    """How many morph targets the mesh carries, after checking they fit the mesh and the clip."""
    if mesh.morph_targets is None:
        if clip is not None and clip.morph_weights is not None:
            raise ValueError("the clip animates morph weights but the mesh has no morph targets")
        return 0
    count = mesh.morph_targets.shape[0]
    if mesh.morph_targets.shape != (count, mesh.positions.shape[0], 3):
        raise ValueError("morph targets must be (K, V, 3) position deltas, one per vertex")
    if mesh.morph_names and len(mesh.morph_names) != count:
        raise ValueError("one name per morph target")
    if clip is not None and clip.morph_weights is not None:
        if clip.morph_weights.shape != (clip.rotations.shape[0], count):
            raise ValueError("the clip needs (T, K) morph weights, one per frame and target")
    return count


def _animation(buf: _Buffer, clip: SkeletonClip, n_joints: int, root: int, mesh_node: int) -> dict:
    frames = clip.rotations.shape[0]
    if clip.rotations.shape != (frames, n_joints, 4) or clip.root_translation.shape != (frames, 3):
        raise ValueError("the clip needs (T, joints, 4) rotations and (T, 3) root translations")
    times = buf.accessor(np.arange(frames, dtype=np.float64) / clip.fps, "SCALAR", _FLOAT)
    samplers, channels = [], []
    for j in range(n_joints):
        output = buf.accessor(clip.rotations[:, j], "VEC4", _FLOAT)
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": j, "target": {"node": j, "path": "rotation"}})
    output = buf.accessor(clip.root_translation, "VEC3", _FLOAT)
    samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
    channels.append({"sampler": n_joints, "target": {"node": root, "path": "translation"}})
    if clip.morph_weights is not None:  # glTF: K scalars per key, frame after frame
        output = buf.accessor(clip.morph_weights.reshape(-1), "SCALAR", _FLOAT)
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": mesh_node, "path": "weights"}})
    return {"name": clip.name, "samplers": samplers, "channels": channels}


def write_glb(
    path: str | os.PathLike, mesh: SkinnedMesh, clip: SkeletonClip | None = None, *, overwrite: bool = False
) -> Path:
    """Write the file atomically (nothing half-written is left behind)."""
    from avatarcli._version import __version__
    from avatarcli.io_utils import atomic_write

    payload = glb_bytes(mesh, clip, generator=f"avatarcli {__version__}")
    target = Path(path)
    with atomic_write(target, overwrite=overwrite) as tmp:
        tmp.write_bytes(payload)
    return target


# ------------------------------------------------------------------------------ reading back
@dataclass
class GLB:
    """A parsed ``.glb``: its JSON document and binary chunk."""

    document: dict
    binary: bytes

    def accessor(self, index: int) -> np.ndarray:
        entry = self.document["accessors"][index]
        width = _COMPONENTS[entry["type"]]
        dtype = np.dtype(_DTYPES[entry["componentType"]]).newbyteorder("<")
        if "bufferView" in entry:
            flat = self._read(entry["bufferView"], dtype, entry["count"] * width, entry.get("byteOffset", 0))
        else:  # glTF: an accessor without a bufferView is zeros (then usually sparse)
            flat = np.zeros(entry["count"] * width, dtype=dtype)
        if "sparse" in entry:
            sparse = entry["sparse"]
            index_type = np.dtype(_DTYPES[sparse["indices"]["componentType"]]).newbyteorder("<")
            rows = self._read(sparse["indices"]["bufferView"], index_type, sparse["count"])
            values = self._read(sparse["values"]["bufferView"], dtype, sparse["count"] * width)
            flat = flat.copy().reshape(entry["count"], width)
            flat[rows.astype(np.int64)] = values.reshape(-1, width)
            flat = flat.reshape(-1)
        return flat.reshape(entry["count"], width) if width > 1 else flat

    def _read(self, view_index: int, dtype: np.dtype, count: int, offset: int = 0) -> np.ndarray:
        view = self.document["bufferViews"][view_index]
        start = view.get("byteOffset", 0) + offset
        return np.frombuffer(self.binary, dtype=dtype, count=count, offset=start)

    def view_bytes(self, index: int) -> bytes:
        view = self.document["bufferViews"][index]
        start = view.get("byteOffset", 0)
        return self.binary[start : start + view["byteLength"]]


def read_glb(path: str | os.PathLike) -> GLB:
    """Parse a ``.glb`` file's two chunks (no validation beyond the header)."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _MAGIC or version != _VERSION or total != len(data):
        raise ValueError(f"{path} is not a glTF 2.0 binary file")
    length, kind = struct.unpack_from("<II", data, 12)
    if kind != _JSON_CHUNK:
        raise ValueError(f"{path}: the first chunk is not JSON")
    document = json.loads(data[20 : 20 + length])
    offset = 20 + length
    binary = b""
    if offset < len(data):
        blength, bkind = struct.unpack_from("<II", data, offset)
        if bkind == _BIN_CHUNK:
            binary = data[offset + 8 : offset + 8 + blength]
    return GLB(document, binary)


def _quaternion_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)  # fmt: skip


def pose_glb(glb: GLB, frame: int | None = None) -> np.ndarray:
    """The skinned mesh's vertices (V, 3) at key ``frame`` of the first animation (None: at rest),
    computed from the file alone as a glTF viewer would: morph targets added with their weights
    (the mesh's defaults, or the clip's at that key), node transforms from the channels, joint
    matrices = world × inverse bind, every JOINTS_k / WEIGHTS_k set of influences."""
    doc = glb.document
    mesh = doc["meshes"][0]
    primitive = mesh["primitives"][0]["attributes"]
    positions = glb.accessor(primitive["POSITION"]).astype(np.float64)
    targets = mesh["primitives"][0].get("targets", [])
    morph = np.asarray(mesh.get("weights", [0.0] * len(targets)), dtype=np.float64)
    sets = sorted(int(name[len("JOINTS_") :]) for name in primitive if name.startswith("JOINTS_"))
    joints = np.concatenate([glb.accessor(primitive[f"JOINTS_{k}"]) for k in sets], 1).astype(np.int64)
    weights = np.concatenate([glb.accessor(primitive[f"WEIGHTS_{k}"]) for k in sets], 1).astype(np.float64)
    skin = doc["skins"][0]
    inverse_bind = glb.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    nodes = doc["nodes"]
    translation = {i: np.array(n.get("translation", [0.0, 0.0, 0.0])) for i, n in enumerate(nodes)}
    rotation = {i: np.array(n.get("rotation", [0.0, 0.0, 0.0, 1.0])) for i, n in enumerate(nodes)}
    if frame is not None:
        animation = doc["animations"][0]
        for channel in animation["channels"]:
            sampler = animation["samplers"][channel["sampler"]]
            target = channel["target"]
            if target["path"] == "weights":
                morph = glb.accessor(sampler["output"]).reshape(-1, len(targets))[frame].astype(np.float64)
                continue
            value = glb.accessor(sampler["output"])[frame].astype(np.float64)
            (rotation if target["path"] == "rotation" else translation)[target["node"]] = value
    for weight, target in zip(morph, targets, strict=True):
        if weight != 0.0:
            positions = positions + weight * glb.accessor(target["POSITION"]).astype(np.float64)
    parent = {child: i for i, n in enumerate(nodes) for child in n.get("children", [])}
    world: dict[int, np.ndarray] = {}

    def world_of(i: int) -> np.ndarray:
        if i not in world:
            local = np.eye(4)
            local[:3, :3] = _quaternion_matrix(rotation[i][None])[0]
            local[:3, 3] = translation[i]
            world[i] = world_of(parent[i]) @ local if i in parent else local
        return world[i]

    matrices = np.stack([world_of(node) @ inverse_bind[k] for k, node in enumerate(skin["joints"])])
    blended = np.einsum("vk,vkab->vab", weights, matrices[joints])
    return np.einsum("vab,vb->va", blended[:, :3, :3], positions) + blended[:, :3, 3]
