"""Joint optimisation of a neural texture and a small renderer against fitted frames (StylePeople §3.2).

The body geometry is fixed once the frames are fitted, so every frame's rasterisation (uv,
body mask, optional camera-space normals) is computed **once** and cached, cropped to the
person. A training step is then only: sample the neural texture at the cached uvs → renderer →
loss on random patches of a few frames. That keeps a step well under a second on a CPU.

Loss (per patch): ``L1 + w_ssim · (1 − SSIM)`` on colour inside the person mask, plus
``w_dice · Dice(alpha, person mask) + w_bce · BCE(alpha, person mask)`` for the silhouette (see
:func:`frame_loss` for why this differs from StylePeople's composite-on-black target). When the
user has installed LPIPS (``avatar weights import lpips``), ``w_lpips · LPIPS`` inside the person
mask replaces the SSIM term (StylePeople trains with LPIPS); nothing is downloaded, so without it
SSIM stands in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets.video_renderer import VideoRenderer, VideoRendererConfig

if TYPE_CHECKING:
    from avatarcli.render import Fragments


@dataclass
class FrameInputs:
    """What the renderer needs for one frame, cropped to ``window`` = (left, top, width, height)."""

    uv: torch.Tensor  # (1, H, W, 2) in [0, 1], 0 off the body
    mask: torch.Tensor  # (1, 1, H, W) body coverage {0, 1}
    normals: torch.Tensor | None  # (1, 3, H, W) camera-space normals, 0 off the body
    window: tuple[int, int, int, int]
    #: (1, 3, H, W) view-dependent colour of the body in this view (renderers with view_colour)
    colour: torch.Tensor | None = None
    #: the rasterisation behind ``uv`` and ``mask`` (view-dependent colour reads its faces)
    fragments: Fragments | None = None


@dataclass
class FrameTarget:
    inputs: FrameInputs
    photo: torch.Tensor  # (1, 3, H, W) [0, 1], same window
    person: torch.Tensor  # (1, 1, H, W) [0, 1] person mask, same window


def rasterize_frame(
    body, vertices: torch.Tensor, camera, *, normals: bool, window: tuple[int, int, int, int] | None = None
) -> FrameInputs:
    """Rasterise the posed body for one camera (batch 1); ``window`` crops the camera first."""
    from avatarcli.render import rasterize, render_normals, render_uv

    if window is not None:
        camera = camera.crop(*window)
    else:
        window = (0, 0, camera.width, camera.height)
    with torch.no_grad():
        fragments = rasterize(vertices, body.faces, camera, cull_backfaces=True)
        uv = render_uv(fragments, body.uv, body.uv_faces)
        mask = fragments.mask[:, None].float()
        cam_normals = None
        if normals:
            cam_normals = render_normals(vertices, body.faces, fragments, camera).permute(0, 3, 1, 2) * mask
    return FrameInputs(uv * mask.permute(0, 2, 3, 1), mask, cam_normals, window, fragments=fragments)


def person_window(masks: Sequence[torch.Tensor], width: int, height: int, margin: int, minimum: int):
    """Bounding box (left, top, w, h) of the union of masks (H, W), grown by ``margin`` and to at
    least ``minimum`` pixels a side (clipped to the image)."""
    union = torch.zeros(height, width, dtype=torch.bool)
    for m in masks:
        union |= m.reshape(height, width).cpu() > 0.5
    if not bool(union.any()):
        return (0, 0, width, height)
    rows = torch.nonzero(union.any(1)).flatten()
    cols = torch.nonzero(union.any(0)).flatten()
    top, bottom = int(rows[0]) - margin, int(rows[-1]) + 1 + margin
    left, right = int(cols[0]) - margin, int(cols[-1]) + 1 + margin

    def grow(lo: int, hi: int, limit: int) -> tuple[int, int]:
        need = min(minimum, limit) - (hi - lo)
        if need > 0:
            lo -= need // 2
            hi += need - need // 2
        shift = max(0, -lo) - max(0, hi - limit)
        lo, hi = lo + shift, hi + shift
        return max(0, lo), min(limit, hi)

    left, right = grow(left, right, width)
    top, bottom = grow(top, bottom, height)
    return (left, top, right - left, bottom - top)


class NeuralAvatarModel(nn.Module):
    """The trainable pair: a neural texture (1, C, T, T) and its renderer."""

    def __init__(self, texture: torch.Tensor, config: VideoRendererConfig) -> None:
        super().__init__()
        if texture.shape[1] != config.texture_channels:
            raise ValueError(
                f"texture has {texture.shape[1]} channels, config says {config.texture_channels}"
            )
        self.texture = nn.Parameter(texture.clone().float())
        self.renderer = VideoRenderer(config)

    @property
    def wants_normals(self) -> bool:
        return self.renderer.config.pose_channels == "normals"

    @property
    def wants_colour(self) -> bool:
        return self.renderer.config.view_colour

    def forward(self, inputs: FrameInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB (B, 3, H, W) (not clamped) and alpha (B, 1, H, W) in (0, 1)."""
        return self.render(inputs.uv, inputs.mask, inputs.normals, inputs.colour)

    def render(self, uv, mask, normals=None, colour=None) -> tuple[torch.Tensor, torch.Tensor]:
        from avatarcli.render import sample_texture

        features = sample_texture(self.texture, uv, mask[:, 0])
        if self.wants_colour:
            if colour is None:
                raise ValueError("this renderer adds to a view-dependent colour: pass the frame's colour")
            features = torch.cat([features[:, :3] + colour * mask, features[:, 3:]], 1)
        rgb, logit = self.renderer(features, uv.permute(0, 3, 1, 2), mask, normals)
        return rgb, torch.sigmoid(logit)


def matte(alpha: torch.Tensor, floor: float = 0.15) -> torch.Tensor:
    """Alpha for compositing: below ``floor`` is fully transparent, so the renderer's faint haze
    far from the body (its mask prior never reaches exactly 0) does not tint the background."""
    return ((alpha - floor) / (1.0 - 2.0 * floor)).clamp(0.0, 1.0)


def dice_loss(alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice over the whole batch: per-patch Dice explodes on patches with little person in them."""
    inter = (alpha * target).sum()
    total = alpha.sum() + target.sum()
    return 1.0 - 2.0 * inter / total.clamp_min(1e-6)


#: colour terms are averaged over at least this share of a patch, so a patch that holds only a
#: sliver of the person cannot make a huge step (it diverged on octopus leave-one-out folds)
MIN_PERSON_SHARE = 0.25


def frame_loss(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    photo: torch.Tensor,
    person: torch.Tensor,
    ssim_weight: float,
    dice_weight: float,
    *,
    bce_weight: float = 0.0,
    lpips: nn.Module | None = None,
    lpips_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Colour (L1 + SSIM, or + LPIPS when given) where the person is, and the silhouette (Dice,
    plus per-pixel cross-entropy with ``bce_weight``) on its own.

    Scoring colour on ``rgb · alpha`` against the person on black (StylePeople's target) lets
    outline errors dominate: the renderer then darkens colours near the outline, which hurts
    the person's pixels. Here colour is compared inside the person mask only (the photo fills
    the rest, so SSIM windows at the outline judge only the renderer's pixels) and alpha is
    trained by the silhouette terms alone; frames are composited as ``rgb · alpha`` afterwards.
    Dice alone rewards overlap, not a calibrated alpha: trained on it, iPER's avatar drew a 3–5 px
    halo round the person (alpha 0.92 where the soft mask said 0.2); the cross-entropy makes
    alpha the mask's own probability, so ``alpha > 0.5`` follows the mask's outline.
    """
    from avatarcli.texture import ssim_map

    weight = person.clamp(0, 1)
    area = weight.sum().clamp_min(MIN_PERSON_SHARE * weight[:, 0].numel())
    l1 = ((rgb - photo).abs() * weight).sum() / (3.0 * area)
    inside = rgb * weight + photo * (1.0 - weight)
    dice = dice_loss(alpha, person)
    silhouette = dice_weight * dice
    if bce_weight > 0:
        bce = F.binary_cross_entropy(alpha.clamp(1e-5, 1.0 - 1e-5), weight)
        silhouette = silhouette + bce_weight * bce
    if lpips is not None:
        perceptual = lpips(inside * 2 - 1, photo * 2 - 1, mask=weight).mean()
        total = l1 + lpips_weight * perceptual + silhouette
        name = "lpips"
    else:
        perceptual = ((1.0 - ssim_map(inside, photo).mean(1, keepdim=True)) * weight).sum() / area
        total = l1 + ssim_weight * perceptual + silhouette
        name = "ssim"
    parts = {"l1": float(l1.detach()), name: float(perceptual.detach()), "dice": float(dice.detach())}
    if bce_weight > 0:
        parts["bce"] = float(bce.detach())
    return total, parts


@dataclass
class TrainSettings:
    steps: int = 300
    batch: int = 2
    patch: int = 128
    lr_texture: float = 2e-3
    lr_renderer: float = 1e-3
    clip_grad: float = 1.0  # renderer gradient norm cap: no norm layers, so keep early steps tame
    ssim_weight: float = 0.5
    lpips_weight: float = 1.0  # replaces the SSIM term when LPIPS is installed (StylePeople's weight)
    dice_weight: float = 0.5
    #: per-pixel cross-entropy of alpha against the person mask (see :func:`frame_loss`)
    bce_weight: float = 1.0
    #: L1 pull of the renderer's change to a view-dependent colour (inside the body) towards 0
    correction_weight: float = 0.0
    checkpoint_every: int = 50


#: steps per divergence check, and how much worse than the best window counts as diverging
GUARD_WINDOW = 25
GUARD_RATIO = 1.6


def _copy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    step: int
    optimizer: dict
    rng: torch.Tensor
    history: list[dict]


def make_optimizer(model: NeuralAvatarModel, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        [
            {"params": [model.texture], "lr": settings.lr_texture},
            {"params": list(model.renderer.parameters()), "lr": settings.lr_renderer},
        ]
    )


def _patch(target: FrameTarget, size: int, generator: torch.Generator):
    """A random ``size``² patch of a frame (the whole window if it is smaller), as a FrameTarget."""
    _, _, height, width = target.photo.shape
    ph, pw = min(size, height), min(size, width)
    top = int(torch.randint(0, height - ph + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - pw + 1, (1,), generator=generator))
    rows, cols = slice(top, top + ph), slice(left, left + pw)
    inp = target.inputs
    normals = inp.normals[..., rows, cols] if inp.normals is not None else None
    colour = inp.colour[..., rows, cols] if inp.colour is not None else None
    return (
        inp.uv[:, rows, cols],
        inp.mask[..., rows, cols],
        normals,
        colour,
        target.photo[..., rows, cols],
        target.person[..., rows, cols],
    )


def train_steps(
    model: NeuralAvatarModel,
    targets: Sequence[FrameTarget],
    settings: TrainSettings,
    *,
    state: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 0,
    lpips: nn.Module | None = None,
) -> TrainState:
    """Run Adam from ``state.step`` (or 0) to ``settings.steps``, checkpointing every few steps.

    On Ctrl-C (or any exception) the state reached so far is handed to ``on_checkpoint`` before
    the exception propagates, so a rerun continues instead of starting over.
    """
    if not targets:
        raise ValueError("train_steps needs at least one frame")
    say = progress or (lambda *_: None)
    optimizer = make_optimizer(model, settings)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    step = 0
    if state is not None:
        optimizer.load_state_dict(state.optimizer)
        generator.set_state(state.rng)
        history, step = list(state.history), state.step
    # patches of one batch must share a size: cap it by the smallest window
    size = min([settings.patch] + [min(t.photo.shape[-2:]) for t in targets])
    model.train()

    def snapshot() -> TrainState:
        return TrainState(step, optimizer.state_dict(), generator.get_state(), list(history))

    # divergence guard: every WINDOW steps compare the mean loss with the best window so far;
    # far worse → roll back to the best weights and halve the learning rates
    best: dict | None = None

    def guard() -> None:
        nonlocal best
        recent = [h["loss"] for h in history[-GUARD_WINDOW:]]
        mean = sum(recent) / len(recent)
        if best is None or mean < best["loss"]:
            best = {
                "loss": mean,
                "model": _copy(model.state_dict()),
                "optimizer": _copy(optimizer.state_dict()),
            }
        elif mean > GUARD_RATIO * best["loss"]:
            model.load_state_dict(best["model"])
            optimizer.load_state_dict(best["optimizer"])
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
            history.append({"step": step, "event": "rolled back (loss rose)", "loss": best["loss"]})

    try:
        while step < settings.steps:
            picks = torch.randint(0, len(targets), (settings.batch,), generator=generator).tolist()
            patches = [_patch(targets[i], size, generator) for i in picks]
            uv, mask, normals, colour, photo, person = (
                torch.cat(p, 0) if p[0] is not None else None for p in zip(*patches, strict=True)
            )
            rgb, alpha = model.render(uv, mask, normals, colour)
            loss, parts = frame_loss(
                rgb, alpha, photo, person, settings.ssim_weight, settings.dice_weight,
                bce_weight=settings.bce_weight, lpips=lpips, lpips_weight=settings.lpips_weight,
            )  # fmt: skip
            if colour is not None and settings.correction_weight > 0:
                change = correction_size(rgb, colour, mask)
                loss = loss + settings.correction_weight * change
                parts["correction"] = float(change.detach())
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"video avatar training diverged at step {step + 1} (loss {loss})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.renderer.parameters(), settings.clip_grad)
            optimizer.step()
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), **parts})
            if step % GUARD_WINDOW == 0:
                guard()
            say("train", step, settings.steps)
            if on_checkpoint and settings.checkpoint_every and step % settings.checkpoint_every == 0:
                on_checkpoint(snapshot())
    except BaseException:
        if on_checkpoint and step > 0:
            on_checkpoint(snapshot())
        raise
    model.eval()
    return snapshot()


def correction_size(rgb: torch.Tensor, colour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute change (per channel) the renderer makes to the view-dependent ``colour`` on
    the body: what :attr:`TrainSettings.correction_weight` pulls towards 0, so the renderer
    changes the photos' colour only where that helps every training frame alike."""
    return ((rgb - colour) * mask).abs().sum() / (3.0 * mask.sum()).clamp_min(1.0)


def full_frame_loss(
    model: NeuralAvatarModel,
    targets: Sequence[FrameTarget],
    settings: TrainSettings,
    lpips: nn.Module | None = None,
) -> float:
    """The training loss over whole frame windows (deterministic; for progress checks and tests)."""
    total = 0.0
    with torch.no_grad():
        for t in targets:
            rgb, alpha = model(t.inputs)
            loss, _ = frame_loss(
                rgb, alpha, t.photo, t.person, settings.ssim_weight, settings.dice_weight,
                bce_weight=settings.bce_weight, lpips=lpips, lpips_weight=settings.lpips_weight,
            )  # fmt: skip
            total += float(loss)
    return total / len(targets)
