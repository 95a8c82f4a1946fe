"""RGB texture refinement through a differentiable render (DINAR App. B, fact sheet §1.12).

The sampled texture is a little blurry and off where the fit is off; a few dozen steps of
gradient descent on the texels, comparing the rendered avatar with the photo inside the person
mask, sharpen it. Texels seen at a grazing angle are unreliable, so each texel's update is
weighted by DINAR's soft threshold of its view cosine (knee at cos 0.6, slope 20) blurred 5×5.

Two deliberate changes from upstream:

* the weight multiplies the Adam *step*, not the gradient. Adam divides by the running gradient
  magnitude, so a per-texel gradient scale cancels out and upstream's soft mask acts as a hard
  cos > 0.6 cut; weighting the step keeps it soft;
* the perceptual term is LPIPS-VGG (weight 1, as DINAR) only when the caller passes the network
  (:func:`avatarcli.pipelines.perceptual.load_lpips_if_installed`: it needs VGG weights the
  user imports); otherwise a differentiable ``1 - SSIM`` (weight 0.2) stands in for it. As
  DINAR, LPIPS sees a 256² window (:data:`LPIPS_WINDOW`) per step, centred on a random pixel of
  the mask (DINAR: a random projected vertex) and clamped to the image; both images are
  multiplied by the mask and the distance is averaged over the mask. The window keeps the VGG
  cost per step fixed whatever the photo size.

Losses: masked L2 (weight 1, as DINAR), optional masked L1, and LPIPS or ``1 - SSIM``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from avatarcli.texture.metrics import ssim

if TYPE_CHECKING:  # pragma: no cover
    from avatarcli.nets.lpips import LPIPS

_SSIM_WINDOW = 11
#: Side of the window LPIPS is computed on (DINAR's crop).
LPIPS_WINDOW = 256


@dataclass
class RefineResult:
    texture: torch.Tensor  # (3, T, T) refined RGB in [0, 1]
    step_weight: torch.Tensor  # (1, T, T) per-texel update weight that was used
    losses: list[float] = field(default_factory=list)  # total loss before each step
    perceptual: str = "ssim"  # the perceptual term used: "lpips_vgg" | "ssim"


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
    *,
    lpips: LPIPS | None = None,
    lpips_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Masked L2 + L1 + a perceptual term between (B, 3, H, W) images in [0, 1]; ``mask`` (B, 1, H, W).

    The perceptual term is ``lpips_weight`` × masked LPIPS when ``lpips`` is given (``ssim_weight``
    is then unused), else ``ssim_weight`` × (1 − SSIM). LPIPS looks at a :data:`LPIPS_WINDOW`
    window centred on a pixel of the mask drawn with ``generator`` (CPU; None: the global RNG).
    """
    mask = mask.to(rendered.dtype)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    rendered, target, mask = _crop_to_mask(rendered, target, mask, margin=_SSIM_WINDOW)
    pixels = (mask.sum() * rendered.shape[1]).clamp_min(1)
    diff = (rendered - target) * mask
    loss = l2_weight * diff.pow(2).sum() / pixels
    if l1_weight:
        loss = loss + l1_weight * diff.abs().sum() / pixels
    if lpips is not None:
        if lpips_weight:
            window = _random_window(mask, LPIPS_WINDOW, generator)
            a, b, m = rendered[window], target[window], mask[window]
            distance = lpips((a * m) * 2 - 1, (b * m) * 2 - 1, m)
            loss = loss + lpips_weight * distance.mean()
    elif ssim_weight:
        loss = loss + ssim_weight * (1 - ssim(rendered, target, mask).mean())
    return loss


def _random_window(mask: torch.Tensor, size: int, generator: torch.Generator | None) -> tuple:
    """Index of a ``size``² window (smaller when the image is) centred on a random mask pixel,
    shifted to lie inside the image."""
    h, w = mask.shape[-2:]
    if h <= size and w <= size:
        return (...,)
    inside = torch.nonzero(mask.amax(dim=(0, 1)) > 0)
    if inside.numel() == 0:
        cy, cx = h // 2, w // 2
    else:
        pick = int(torch.randint(len(inside), (1,), generator=generator))
        cy, cx = (int(v) for v in inside[pick])
    top = min(max(cy - size // 2, 0), max(h - size, 0))
    left = min(max(cx - size // 2, 0), max(w - size, 0))
    return (..., slice(top, top + size), slice(left, left + size))


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
    lpips: LPIPS | None = None,
    lpips_weight: float = 1.0,
    seed: int = 0,
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
        lpips: optional LPIPS network (on the images' device): the perceptual term becomes
            ``lpips_weight`` × LPIPS instead of ``ssim_weight`` × (1 − SSIM); ``seed`` fixes its
            windows.
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
    windows = torch.Generator().manual_seed(int(seed))
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss = photometric_loss(
            render_fn(param), target_image, target_mask, l2_weight, l1_weight, ssim_weight,
            lpips=lpips, lpips_weight=lpips_weight, generator=windows,
        )  # fmt: skip
        loss.backward()
        losses.append(float(loss.detach()))
        before = param.detach().clone()
        optimiser.step()
        with torch.no_grad():
            param.copy_((before + weight * (param - before)).clamp(0, 1))
    perceptual = "lpips_vgg" if lpips is not None else "ssim"
    return RefineResult(param.detach()[0], weight[0], losses, perceptual)
