"""Multi-view merge of sampled RGB textures (DINAR Eq. 5, fact sheet §1.11).

Each view saw a texel at some angle; a head-on view carries more detail than a grazing one. The
merged colour is a softmax over views of ``cos / tau`` (DINAR: ``10 · cos``, i.e. ``tau = 0.1``),
taken **only over the views that sampled the texel** — upstream also lets views that never saw
the texel into the softmax (with colour 0), which darkens texels seen by few views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from avatarcli.texture.sampling import SampledTexture


@dataclass
class MergedTexture:
    rgb: torch.Tensor  # (3, T, T) float in [0, 1]; 0 where no view saw the texel
    known: torch.Tensor  # (1, T, T) bool: at least one view sampled the texel
    view_cos: torch.Tensor  # (1, T, T) best cosine over the views (weights refinement later)
    views_seen: torch.Tensor  # (1, T, T) long: how many views sampled the texel


def merge_views(
    rgb: torch.Tensor,
    known: torch.Tensor,
    view_cos: torch.Tensor,
    tau: float = 0.1,
) -> MergedTexture:
    """Blend per-view textures ``rgb`` (V, 3, T, T) with masks ``known`` (V, 1, T, T) and
    cosines ``view_cos`` (V, 1, T, T) into one texture.

    Weights are ``softmax_v(cos_v / tau)`` over the views with ``known_v``; a small ``tau`` picks
    the most frontal view, a large one averages. Typical inputs are the stacked fields of
    :class:`avatarcli.texture.sampling.SampledTexture` (``filled`` or ``sampled`` as ``known``).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if rgb.dim() != 4 or known.shape[0] != rgb.shape[0] or view_cos.shape[0] != rgb.shape[0]:
        raise ValueError("rgb, known and view_cos must be stacked per view: (V,3,T,T), (V,1,T,T), (V,1,T,T)")
    known = known.bool()
    logits = (view_cos.to(rgb.dtype) / tau).masked_fill(~known, float("-inf"))
    any_view = known.any(dim=0)
    # Texels nobody saw would give softmax(-inf, ...) = NaN; give them a zero logit and weight 0.
    logits = torch.where(any_view.unsqueeze(0), logits, torch.zeros_like(logits))
    weights = torch.softmax(logits, dim=0) * any_view
    merged = (weights * rgb).sum(dim=0)
    best_cos = torch.where(known, view_cos.to(rgb.dtype), torch.zeros_like(logits)).amax(dim=0)
    return MergedTexture(
        rgb=merged,
        known=any_view,
        view_cos=best_cos,
        views_seen=known.sum(dim=0),
    )


def merge_sampled(views: Sequence[SampledTexture], tau: float = 0.1, use_ring: bool = True) -> MergedTexture:
    """Merge the results of :func:`~avatarcli.texture.sampling.sample_rgb_texture`, one per view.

    ``use_ring`` counts the neighbour-averaged ring texels (B_fill) as sampled; without it only
    exact texels (B_smp) are merged.
    """
    if not views:
        raise ValueError("merge needs at least one sampled view")
    rgb = torch.cat([v.rgb for v in views])
    known = torch.cat([v.filled if use_ring else v.sampled for v in views])
    cos = torch.cat([v.view_cos for v in views])
    return merge_views(rgb, known, cos, tau)
