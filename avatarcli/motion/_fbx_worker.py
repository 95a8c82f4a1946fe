"""Child-process FBX parser: ``python -m avatarcli.motion._fbx_worker IN.fbx OUT.npz``.

ufbx's Python bindings can crash the interpreter (a refcount bug in cached element wrappers,
see docs/MOTION_FORMAT.md), so FBX files are parsed here, in a throw-away process, and only
plain numpy arrays cross back. Every fetched element gets an extra reference and the scene is
never freed; the process exit reclaims the memory.

Output arrays: ``names`` (J,), ``parents`` (J,) (−1 for skeleton roots), ``rest_world``
(J, 4, 4), ``world`` (T, J, 4, 4) in metres, Y-up (+Z front), ``fps`` and ``take``.
Exit status 3 with a one-line message on stderr for a file we cannot use.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

EXIT_BAD_FILE = 3
MAX_FRAMES = 200_000
MAX_FRAMES_FULL_EVAL = 10_000

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


def _keep(obj):  # noqa: ANN001, ANN202 - any ufbx element
    """Pin a ufbx wrapper: repeated fetches return it without a new reference (binding bug)."""
    if obj is not None:
        _incref(obj)
    return obj


def _mat4(m) -> np.ndarray:  # noqa: ANN001 - ufbx.Matrix, columns c0..c3
    return np.array(
        [
            [m.c0.x, m.c1.x, m.c2.x, m.c3.x],
            [m.c0.y, m.c1.y, m.c2.y, m.c3.y],
            [m.c0.z, m.c1.z, m.c2.z, m.c3.z],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


class BadFile(Exception):
    pass


def extract(path: str) -> dict[str, np.ndarray]:
    import ufbx

    try:
        scene = ufbx.load_file(
            path,
            target_axes=ufbx.CoordinateAxes(
                ufbx.CoordinateAxis.POSITIVE_X, ufbx.CoordinateAxis.POSITIVE_Y, ufbx.CoordinateAxis.POSITIVE_Z
            ),
            target_unit_meters=1.0,
            space_conversion=ufbx.SpaceConversion.ADJUST_TRANSFORMS,
        )
    except Exception as exc:  # ufbx raises one class per failure kind
        reason = str(exc).replace("\n", " ")
        if type(exc).__name__ in ("UnknownError", "TruncatedFileError") or reason == "Failed to load":
            reason = "the file is truncated or corrupt"
        raise BadFile(f"cannot parse it as FBX ({reason})") from exc
    _keep(scene)
    nodes = [_keep(n) for n in scene.nodes]
    bones = [n for n in nodes if _keep(n.bone) is not None]
    if not bones:
        raise BadFile("it has no skeleton (no LimbNode bones)")
    ids = {b.typed_id: i for i, b in enumerate(bones)}
    parents = []
    for b in bones:
        p = _keep(b.parent)
        parents.append(ids.get(p.typed_id, -1) if p is not None else -1)
    rest_world = _rest_pose(bones, parents)

    stacks = [_keep(s) for s in scene.anim_stacks]
    curves = [_keep(c) for c in scene.anim_curves]
    keyed = [c for c in curves if c.max_time > c.min_time]
    if not stacks or not keyed:
        raise BadFile("it has no animation (no take with keyframes)")
    stack = max(stacks, key=lambda s: s.time_end - s.time_begin)
    begin, end = stack.time_begin, stack.time_end
    if end <= begin:  # no take range stored: use the keyframes' own range
        begin, end = min(c.min_time for c in keyed), max(c.max_time for c in keyed)
    anim = _keep(stack.anim)
    settings = _keep(scene.settings)
    fps = float(settings.frames_per_second) or 30.0
    count = int(round((end - begin) * fps)) + 1
    if count > MAX_FRAMES:
        raise BadFile(f"its animation is too long ({count} frames at {fps:g} fps)")
    world = _sample_world(ufbx, scene, anim, bones, [begin + f / fps for f in range(count)])
    return {
        "names": np.array([b.name for b in bones]),
        "parents": np.array(parents, dtype=np.int64),
        "rest_world": rest_world,
        "world": world,
        "fps": np.array(fps),
        "take": np.array(str(stack.name)),
    }


def _trs_matrices(values: np.ndarray) -> np.ndarray:
    """(..., 10) translation, quaternion xyzw, scale → (..., 4, 4) matrices T·R·S.

    Built here because ``ufbx.transform_to_matrix`` crashes in these bindings.
    """
    t, (x, y, z, w), scale = values[..., :3], np.moveaxis(values[..., 3:7], -1, 0), values[..., 7:]
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    out = np.zeros((*values.shape[:-1], 4, 4))
    out[..., :3, :3] = rot * scale[..., None, :]
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def _trs_values(transform) -> tuple[float, ...]:  # noqa: ANN001 - ufbx.Transform
    tr, q, sc = transform.translation, transform.rotation, transform.scale
    return (tr.x, tr.y, tr.z, q.x, q.y, q.z, q.w, sc.x, sc.y, sc.z)


def _sample_world(ufbx, scene, anim, bones: list, times: list[float]) -> np.ndarray:  # noqa: ANN001
    """World matrices (T, J, 4, 4) of ``bones`` at ``times``.

    Fast path: chain each ancestor's animated local transform (constant memory). It ignores
    exotic scale-inheritance modes, so it is checked against ``evaluate_scene`` on three
    frames; if they disagree, every frame is evaluated with ``evaluate_scene`` (which keeps
    each evaluated copy alive: ~0.2 MB per frame, hence :data:`MAX_FRAMES_FULL_EVAL`).
    """
    chains: list[list] = []
    for bone in bones:
        chain, node = [], bone
        while node is not None:
            chain.append(node)
            node = _keep(node.parent)
        chains.append(chain[::-1])  # root first
    ids = {n.typed_id: n for chain in chains for n in chain}

    def chained(ts: list[float]) -> np.ndarray:
        order = list(ids)
        values = np.array(
            [[_trs_values(ufbx.evaluate_transform(anim, ids[i], t)) for i in order] for t in ts]
        )
        local = _trs_matrices(values)  # (T, N, 4, 4)
        column = {i: k for k, i in enumerate(order)}
        out = np.empty((len(ts), len(bones), 4, 4))
        for k, chain in enumerate(chains):
            m = local[:, column[chain[0].typed_id]]
            for n in chain[1:]:
                m = m @ local[:, column[n.typed_id]]
            out[:, k] = m
        return out

    def evaluated(t: float) -> np.ndarray:
        ev_nodes = [_keep(n) for n in _keep(ufbx.evaluate_scene(scene, anim, t)).nodes]
        return np.stack([_mat4(_keep(ev_nodes[b.typed_id].node_to_world)) for b in bones])

    probes = sorted({0, len(times) // 2, len(times) - 1})
    scale = max(1.0, max(float(np.abs(evaluated(times[i])[:, :3, 3]).max()) for i in probes))
    fast = chained([times[i] for i in probes])
    if all(np.abs(fast[k] - evaluated(times[i])).max() < 1e-6 * scale for k, i in enumerate(probes)):
        return chained(times)
    if len(times) > MAX_FRAMES_FULL_EVAL:
        raise BadFile(
            f"its skeleton uses transform inheritance that needs full scene evaluation, which is "
            f"limited to {MAX_FRAMES_FULL_EVAL} frames (it has {len(times)})"
        )
    return np.stack([evaluated(t) for t in times])


def _rest_pose(bones: list, parents: list[int]) -> np.ndarray:
    """(J, 4, 4) rest world matrices: the bind pose when every bone has one, else the static pose.

    The bind pose is trusted only if its bone lengths agree with the static pose's (lengths do
    not change with pose), which guards against bind matrices left in the file's own units.
    """
    static = np.stack([_mat4(_keep(b.node_to_world)) for b in bones])
    bind = [_bind_matrix(b) for b in bones]
    if any(m is None for m in bind):
        return static
    bind_arr = np.stack(bind)
    idx = [(j, p) for j, p in enumerate(parents) if p >= 0]
    if not idx:
        return bind_arr
    child, par = np.array(idx).T
    len_static = np.linalg.norm(static[child, :3, 3] - static[par, :3, 3], axis=-1)
    len_bind = np.linalg.norm(bind_arr[child, :3, 3] - bind_arr[par, :3, 3], axis=-1)
    usable = len_static > 1e-4
    if usable.any() and np.allclose(len_bind[usable], len_static[usable], rtol=0.02, atol=1e-4):
        return bind_arr
    return static


def _bind_matrix(bone) -> np.ndarray | None:  # noqa: ANN001
    """The bone's bind-pose world matrix, if a bind pose in the file lists it."""
    pose = _keep(bone.bind_pose)
    if pose is None:
        return None
    for bp in [_keep(x) for x in pose.bone_poses]:
        node = _keep(bp.bone_node)
        if node is not None and node.typed_id == bone.typed_id:
            return _mat4(_keep(bp.bone_to_world))
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m avatarcli.motion._fbx_worker IN.fbx OUT.npz", file=sys.stderr)
        return 2
    try:
        arrays = extract(argv[0])
    except BadFile as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_FILE
    if not all(np.isfinite(a).all() for a in (arrays["rest_world"], arrays["world"])):
        print("its skeleton or animation contains NaN/infinite transforms", file=sys.stderr)
        return EXIT_BAD_FILE
    np.savez(argv[1], **arrays)
    sys.stdout.flush()
    # skip interpreter teardown: freeing pinned ufbx wrappers is what crashes
    import os

    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
