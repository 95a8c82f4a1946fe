"""Data terms of the fit: robust keypoint reprojection and a silhouette term against the mask.

Residuals are measured in **percent of the person's height in pixels**, so weights mean the
same at any image size: a good fit has residuals of about 1, and the Geman-McClure function
(scale σ = 10 %) makes a wrong detection (an arm 40 % away) count little more than a
slightly-off one.

Silhouette: every vertex of a body projects *inside* its own silhouette, and every boundary
pixel of the silhouette is close to some projected vertex. So, with the person mask standing
in for the true silhouette, (a) vertices are pulled into the mask along its distance
transform and (b) mask boundary pixels pull their nearest projected vertex. Both are
differentiable in the vertex positions without a soft rasteriser, and cost a few
milliseconds on CPU. :func:`dice_loss` is the classic alternative on the render core's
``soft_silhouette``; ``FitSettings.dice_weight`` adds it (measured in eval_fit.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def gmof(residual_sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure robust function of a squared residual."""
    s2 = sigma * sigma
    return s2 * residual_sq / (s2 + residual_sq)


def keypoint_loss(
    projected: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor,
    sigma: float = 10.0,
) -> torch.Tensor:
    """(B,) weighted mean robust reprojection error.

    ``projected`` (B, K, 2) and ``target`` (B, K, 2) in pixels, ``weight`` (B, K) = confidence ×
    trust, ``scale`` (B,) the person height in pixels (residuals become % of height).
    """
    res = (projected - target) * (100.0 / scale)[:, None, None]
    res_sq = (res * res).sum(-1)
    res_sq = torch.where(weight > 0, res_sq, torch.zeros_like(res_sq))  # keep NaN/inf of unseen points out
    total = (weight * gmof(res_sq, sigma)).sum(-1)
    return total / weight.sum(-1).clamp_min(1e-6)


#: vertices (an even subsample) that boundary pixels look for in the coverage term
COVERAGE_VERTICES = 4000


@dataclass
class SilhouetteTarget:
    """A person mask prepared for :func:`silhouette_loss` (one per view)."""

    outside_distance: torch.Tensor  # (1, 1, h, w): distance (in % of height) to the mask, 0 inside
    boundary: torch.Tensor  # (P, 2) boundary pixel centres in original-image pixels
    size: tuple[int, int]  # original (W, H)
    scale: float  # person height in original pixels

    @classmethod
    def from_mask(
        cls,
        mask: np.ndarray,
        person_height_px: float,
        work_side: int = 256,
        max_boundary: int = 600,
        seed: int = 0,
    ) -> SilhouetteTarget | None:
        import cv2

        height, width = mask.shape
        factor = min(1.0, work_side / max(height, width))
        small = cv2.resize(
            mask.astype(np.float32), (max(1, round(width * factor)), max(1, round(height * factor)))
        )
        binary = (small > 0.5).astype(np.uint8)
        if binary.sum() < 16:
            return None
        dist = cv2.distanceTransform(1 - binary, cv2.DIST_L2, 3).astype(np.float32)
        dist = dist / factor * (100.0 / person_height_px)  # small pixels → % of height
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        pts = np.concatenate([c[:, 0, :] for c in contours], 0).astype(np.float32)
        if len(pts) > max_boundary:
            pts = pts[np.random.default_rng(seed).choice(len(pts), max_boundary, replace=False)]
        boundary = (pts + 0.5) / factor
        return cls(
            torch.from_numpy(dist)[None, None], torch.from_numpy(boundary), (width, height), person_height_px
        )


def dice_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera,
    mask_small: torch.Tensor,
    sigma: float = 1.0,
    face_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 − Dice between the render core's soft silhouette of one mesh and a (h, w) mask.

    ``camera`` must already be scaled to the mask's size (``Camera.scale``); ``face_index``: the
    mesh's culled z-buffer pass there, when the caller has one (see ``soft_silhouette``).
    """
    from avatarcli.render.silhouette import soft_silhouette

    soft = soft_silhouette(vertices, faces, camera, sigma=sigma, face_index=face_index)[0]
    mask = mask_small.to(soft.dtype)
    return 1.0 - 2.0 * (soft * mask).sum() / (soft.sum() + mask.sum()).clamp_min(1e-6)


def silhouette_loss(pixels: torch.Tensor, target: SilhouetteTarget) -> torch.Tensor:
    """Scalar: (a) vertices outside the mask + (b) mask boundary far from the mesh, in %² of height.

    ``pixels`` (V, 2): projected vertices of one view in original-image pixels.
    """
    width, height = target.size
    grid = torch.stack([pixels[:, 0] / width * 2 - 1, pixels[:, 1] / height * 2 - 1], -1)
    outside = torch.nn.functional.grid_sample(
        target.outside_distance.to(pixels.dtype),
        grid[None, :, None, :],
        align_corners=False,
        padding_mode="border",
    )[0, 0, :, 0]
    inside_term = (outside**2).mean()
    # coverage: pair each boundary pixel with its nearest vertex (found without autograd, which
    # would otherwise keep a boundary × vertices matrix), then differentiate only those pairs
    boundary = target.boundary.to(pixels.dtype)
    step = max(1, pixels.shape[0] // COVERAGE_VERTICES)
    candidates = pixels[::step]
    with torch.no_grad():
        nearest_id = torch.cdist(boundary, candidates).argmin(1)
    nearest = (boundary - candidates[nearest_id]).norm(dim=-1) * (100.0 / target.scale)
    cover_term = gmof(nearest**2, 10.0).mean()
    return inside_term + cover_term
