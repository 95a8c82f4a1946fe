"""Shared fixtures: a synthetic SMPL-X model file, the shared data folder, device helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# keep test runs off the user's real caches and quiet on 2-core CI machines
os.environ.setdefault("AVATAR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "avatar"))
os.environ.setdefault("MPLCONFIGDIR", str(Path(__file__).resolve().parents[1] / ".cache" / "mpl"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"

SMPLX_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53]  # fmt: skip
SMPLX_V, SMPLX_J, SMPLX_F = 10475, 55, 20908


def make_smplx_npz(path: Path, seed: int = 0, correctives: float = 0.0) -> Path:
    """A SMPL-X-format model file with the real sizes and random values (never committed).
    ``correctives`` > 0: pose-corrective shapes of about that size (m per radian-ish), each vertex
    moved by the rotation of the joint it is skinned to, as SMPL-X's are local; else none.

    Joints sit on a plausible human skeleton (from the anny-derived rest joints would tie the
    fixture to anny; instead a hand-made T-pose layout), vertices scatter around the joints
    they are skinned to, so heights and facing are testable.
    """
    rng = np.random.default_rng(seed)
    joints = np.zeros((SMPLX_J, 3), np.float32)
    layout = {0: (0, 0, 0), 1: (.09, -.08, 0), 2: (-.09, -.08, 0), 3: (0, .1, -.02), 4: (.1, -.48, 0),
              5: (-.1, -.48, 0), 6: (0, .23, -.02), 7: (.1, -.88, -.03), 8: (-.1, -.88, -.03),
              9: (0, .29, 0), 10: (.12, -.93, .1), 11: (-.12, -.93, .1), 12: (0, .5, -.02),
              13: (.07, .42, 0), 14: (-.07, .42, 0), 15: (0, .6, .03), 16: (.18, .44, -.02),
              17: (-.18, .44, -.02), 18: (.44, .44, -.04), 19: (-.44, .44, -.04), 20: (.68, .44, -.04),
              21: (-.68, .44, -.04), 22: (0, .58, .08), 23: (.03, .66, .09),
              24: (-.03, .66, .09)}  # fmt: skip
    for j, xyz in layout.items():
        joints[j] = xyz
    for j in range(25, SMPLX_J):  # fingers: chain out along ±x from the wrists
        parent = SMPLX_PARENTS[j]
        side = 1.0 if j < 40 else -1.0
        joints[j] = joints[parent] + np.array([side * 0.03, 0, 0.01 * ((j - 25) % 15 // 3 - 2)])
    owner = rng.integers(0, 22, SMPLX_V)
    v_template = joints[owner] + rng.normal(scale=0.03, size=(SMPLX_V, 3)).astype(np.float32)
    weights = np.full((SMPLX_V, SMPLX_J), 1e-4, np.float32)
    weights[np.arange(SMPLX_V), owner] = 1.0
    weights /= weights.sum(1, keepdims=True)
    # the joint regressor averages the vertices owned by each joint, reproducing the layout
    jreg = np.zeros((SMPLX_J, SMPLX_V), np.float32)
    for j in range(SMPLX_J):
        sel = np.where(owner == j)[0]
        if len(sel) == 0:  # face/hand joints own no vertex: regress from the nearest one
            sel = np.linalg.norm(v_template - joints[j], axis=1).argmin(keepdims=True)
        jreg[j, sel] = 1.0 / len(sel)
    kt = np.stack([np.array(SMPLX_PARENTS, np.int64), np.arange(SMPLX_J)])
    kt[0, 0] = 4294967295
    faces = rng.integers(0, SMPLX_V, (SMPLX_F, 3)).astype(np.uint32)
    data = dict(
        v_template=v_template,
        f=faces,
        shapedirs=rng.normal(scale=1e-3, size=(SMPLX_V, 3, 20)).astype(np.float32),
        posedirs=_posedirs(rng, owner, correctives),
        J_regressor=jreg,
        weights=weights,
        kintree_table=kt,
        hands_componentsl=rng.normal(size=(45, 45)).astype(np.float32),
        hands_componentsr=rng.normal(size=(45, 45)).astype(np.float32),
        hands_meanl=np.zeros(45, np.float32),
        hands_meanr=np.zeros(45, np.float32),
        lmk_faces_idx=rng.integers(0, SMPLX_F, 51).astype(np.int64),
        lmk_bary_coords=np.full((51, 3), 1 / 3, np.float32),
        vt=rng.random((SMPLX_V + 500, 2)).astype(np.float32),
        ft=rng.integers(0, SMPLX_V + 500, (SMPLX_F, 3)).astype(np.int64),
    )
    np.savez_compressed(path, **data)
    return path


def _posedirs(rng: np.random.Generator, owner: np.ndarray, size: float) -> np.ndarray:
    posedirs = np.zeros((SMPLX_V, 3, (SMPLX_J - 1) * 9), np.float32)
    if size > 0:
        for v, joint in enumerate(owner):
            if joint > 0:  # the pose feature (R - I) of joint j sits at columns 9(j-1) .. 9j
                posedirs[v, :, 9 * (joint - 1) : 9 * joint] = rng.normal(scale=size, size=(3, 9))
    return posedirs


@pytest.fixture(scope="session")
def smplx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a synthetic ``SMPLX_NEUTRAL.npz`` (real sizes, random values)."""
    folder = tmp_path_factory.mktemp("smplx")
    make_smplx_npz(folder / "SMPLX_NEUTRAL.npz")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread; modules
    ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def anny_body():
    """The default anny body (built once per cache; ~1-2 min on a cold cache)."""
    from avatarcli.body import load_body

    return load_body("anny")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present in this checkout")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Auto-skip GPU tests when no CUDA device is visible."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
