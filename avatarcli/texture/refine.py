"""RGB texture refinement through a differentiable render (DINAR App. B, fact sheet §1.12).

The sampled texture is a little blurry and off where the fit is off; a few dozen steps of
gradient descent on the texels, comparing the rendered avatar with the photo inside the person
mask, sharpen it. Texels seen at a grazing angle are unreliable, so each texel's update is
weighted by DINAR's soft threshold of its view cosine (knee at cos 0.6, slope 20) blurred 5×5.

Two deliberate changes from upstream:

* the weight multiplies the Adam *step*, not the gradient. Adam divides by the running gradient
  magnitude, so a per-texel gradient scale cancels out and upstream's soft mask acts as a hard
  cos > 0.6 cut; weighting the step keeps it soft;
* the perceptual term is a differentiable SSIM, not LPIPS: LPIPS needs VGG weights we do not
  ship (no LPIPS weights are available locally), so there is no LPIPS option.

Losses: masked L2 (weight 1, as DINAR), optional masked L1, and ``1 - SSIM``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from avatarcli.texture.metrics import ssim

_SSIM_WINDOW = 11


@dataclass
class RefineResult:
    texture: torch.Tensor  # (3, T, T) refined RGB in [0, 1]
    step_weight: torch.Tensor  # (1, T, T) per-texel update weight that was used
    losses: list[float] = field(default_factory=list)  # total loss before each step


def view_angle_weight(view_cos: torch.Tensor, knee: float = 0.6, slope: float = 20.0, blur: int = 5):
    """DINAR's per-texel trust in a view: ``cos · max(1 - exp((knee - cos)·slope), 0)``, box-blurred.

    ``view_cos`` (T, T), (1, T, T) or (1, 1, T, T); returns (1, 1, T, T).
    """
    cos = view_cos.reshape(1, 1, *view_cos.shape[-2:]).float()
    weight = cos * (1 - torch.exp((knee - cos) * slope)).clamp_min(0)
    if blur > 1:
        weight = F.avg_pool2d(weight, blur, stride=1, padding=blur // 2, count_include_pad=False)
    return weight


def photometric_loss(
    rendered: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    l2_weight: float = 1.0,
    l1_weight: float = 0.0,
    ssim_weight: float = 0.2,
) -> torch.Tensor:
    """Masked L2 + L1 + (1 − SSIM) between (B, 3, H, W) images; ``mask`` (B, 1, H, W)."""
    mask = mask.to(rendered.dtype)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    rendered, target, mask = _crop_to_mask(rendered, target, mask, margin=_SSIM_WINDOW)
    pixels = (mask.sum() * rendered.shape[1]).clamp_min(1)
    diff = (rendered - target) * mask
    loss = l2_weight * diff.pow(2).sum() / pixels
    if l1_weight:
        loss = loss + l1_weight * diff.abs().sum() / pixels
    if ssim_weight:
        loss = loss + ssim_weight * (1 - ssim(rendered, target, mask).mean())
    return loss


def _crop_to_mask(rendered, target, mask, margin: int):
    """Crop all three to the mask's bounding box (+ ``margin``): the loss only looks there, and the
    person often fills a small part of the photo. Losses are unchanged (SSIM windows at the mask
    stay inside the crop)."""
    rows = torch.nonzero(mask.amax(dim=(0, 1, 3)) > 0)
    cols = torch.nonzero(mask.amax(dim=(0, 1, 2)) > 0)
    if rows.numel() == 0:
        return rendered, target, mask
    h, w = mask.shape[-2:]
    top, bottom = max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, h)
    left, right = max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, w)
    window = (..., slice(top, bottom), slice(left, right))
    return rendered[window], target[window], mask[window]


def refine_texture(
    texture: torch.Tensor,
    known_mask: torch.Tensor | None,
    render_fn: Callable[[torch.Tensor], torch.Tensor],
    target_image: torch.Tensor,
    target_mask: torch.Tensor,
    cos_texel: torch.Tensor,
    steps: int = 64,
    lr: float = 2e-3,
    *,
    l2_weight: float = 1.0,
    l1_weight: float = 0.0,
    ssim_weight: float = 0.2,
    render_mask: torch.Tensor | None = None,
) -> RefineResult:
    """Fine-tune an RGB texture so that ``render_fn(texture)`` matches the photo.

    Args:
        texture: (3, T, T) or (1, 3, T, T) RGB in [0, 1] (sampled, merged or filled).
        known_mask: (T, T)-like texels that may change (dilated by one texel), or None for all.
        render_fn: texture (1, 3, T, T) → rendered image (B, 3, H, W), differentiable in the
            texture — e.g. ``avatarcli.render.render_textured`` bound to the fitted mesh/camera.
        target_image: (B, 3, H, W) photo in [0, 1]; ``target_mask`` (B, 1, H, W) the person.
        cos_texel: (T, T)-like view cosine per texel (``SampledTexture.view_cos``).
        steps, lr: Adam with DINAR's betas (0, 0.99) and lr 2e-3 by default.
        render_mask: optional (B, 1, H, W) mesh coverage; the loss then uses the intersection
            with ``target_mask``, as DINAR does, so photo pixels the mesh misses do not count.
    """
    start = texture.detach().reshape(1, 3, *texture.shape[-2:]).float()
    weight = view_angle_weight(cos_texel.to(start.device))
    if known_mask is not None:
        allowed = known_mask.reshape(1, 1, *start.shape[-2:]).to(start.device).float()
        weight = weight * F.max_pool2d(allowed, 3, stride=1, padding=1)
    param = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([param], lr=lr, betas=(0.0, 0.99), eps=1e-8)
    losses: list[float] = []
    target_mask = target_mask.to(start.device).bool()
    if target_mask.dim() == 3:
        target_mask = target_mask.unsqueeze(1)
    if render_mask is not None:
        target_mask = target_mask & render_mask.to(start.device).reshape(target_mask.shape).bool()
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss = photometric_loss(
            render_fn(param), target_image, target_mask, l2_weight, l1_weight, ssim_weight
        )
        loss.backward()
        losses.append(float(loss.detach()))
        before = param.detach().clone()
        optimiser.step()
        with torch.no_grad():
            param.copy_((before + weight * (param - before)).clamp(0, 1))
    return RefineResult(texture=param.detach()[0], step_weight=weight[0], losses=losses)
