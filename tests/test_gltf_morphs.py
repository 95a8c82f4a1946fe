"""Morph targets in our glTF writer/reader and the clip baking that fills them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarcli.body.baking import bake_shapes
from avatarcli.media.gltf import SkeletonClip, SkinnedMesh, glb_bytes, pose_glb, read_glb


def _mesh(targets: np.ndarray | None = None) -> SkinnedMesh:
    """Four vertices on one root joint (skinning is then the root's transform)."""
    return SkinnedMesh(
        positions=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
        normals=np.tile(np.array([[0, 0, 1]], np.float32), (4, 1)),
        uv=np.zeros((4, 2), np.float32),
        triangles=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
        joints=np.zeros((4, 4), np.int64),
        weights=np.tile(np.array([[1, 0, 0, 0]], np.float32), (4, 1)),
        joint_names=("root",),
        parents=(-1,),
        joint_positions=np.zeros((1, 3), np.float32),
        texture_png=b"\x89PNG",
        morph_targets=targets,
    )


def _clip(weights: np.ndarray | None, frames: int = 3) -> SkeletonClip:
    rotations = np.tile(np.array([0, 0, 0, 1], np.float32), (frames, 1, 1))
    return SkeletonClip(rotations, np.zeros((frames, 3), np.float32), 30.0, morph_weights=weights)


def test_morph_targets_round_trip_sparse_and_animate(tmp_path):
    """A target moving one vertex is stored sparsely, a target moving all densely; read back, the
    weights of each key move the vertices by weight × delta before skinning."""
    one = np.zeros((4, 3), np.float32)
    one[2] = [0.0, 0.0, 0.5]
    every = np.full((4, 3), 0.1, np.float32)
    weights = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, -1.0]], np.float32)
    path = tmp_path / "m.glb"
    path.write_bytes(glb_bytes(_mesh(np.stack([one, every])), _clip(weights)))
    glb = read_glb(path)
    primitive = glb.document["meshes"][0]["primitives"][0]
    sparse, dense = (glb.document["accessors"][t["POSITION"]] for t in primitive["targets"])
    assert sparse["sparse"]["count"] == 1 and "bufferView" not in sparse
    assert "sparse" not in dense
    assert np.array_equal(glb.accessor(primitive["targets"][0]["POSITION"]), one)
    rest = _mesh().positions
    assert np.allclose(pose_glb(glb), rest)  # the mesh's default weights are 0
    assert np.allclose(pose_glb(glb, 1), rest + one)
    assert np.allclose(pose_glb(glb, 2), rest + 0.5 * one - every)


def test_morph_weights_must_fit_the_targets():
    targets = np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match="no morph targets"):
        glb_bytes(_mesh(), _clip(np.zeros((3, 2), np.float32)))
    with pytest.raises(ValueError, match="one per frame"):
        glb_bytes(_mesh(targets), _clip(np.zeros((3, 1), np.float32)))
    with pytest.raises(ValueError, match="one per vertex"):
        glb_bytes(_mesh(np.zeros((2, 3, 3), np.float32)))


def test_bake_shapes_finds_the_fewest_targets_within_tolerance():
    """Residuals of rank two over 100 frames: two components reproduce them, each stored as one
    target per sign so every weight lies in [0, 1]; a vertex no frame moves stays exactly zero;
    residuals under the tolerance need none."""
    generator = torch.Generator().manual_seed(0)
    shapes = torch.randn(2, 50, 3, generator=generator) * 0.01
    shapes[:, 7] = 0.0
    curves = torch.randn(100, 2, generator=generator)

    def residuals(frames: torch.Tensor) -> torch.Tensor:
        return torch.einsum("fk,kvc->fvc", curves[frames], shapes)

    baked = bake_shapes(residuals, 100, tolerance=1e-5)
    assert baked is not None and baked.targets.shape == (4, 50, 3) and baked.weights.shape == (100, 4)
    assert baked.error_after < 1e-5 < baked.error_before
    assert baked.weights.min() == 0.0 and np.allclose(baked.weights.max(0), 1.0)
    rebuilt = np.einsum("fk,kvc->fvc", baked.weights, baked.targets)
    assert np.allclose(rebuilt, residuals(torch.arange(100)).numpy(), atol=1e-5)
    assert not baked.targets[:, 7].any()
    assert bake_shapes(lambda frames: residuals(frames) * 1e-5, 100, tolerance=1e-5) is None
