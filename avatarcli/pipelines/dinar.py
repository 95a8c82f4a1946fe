"""The neural part of ``avatar create --method dinar`` / ``avatar merge --method dinar``: the
photos' sampled textures → one complete 21-channel DINAR texture (fact sheet §1.5–§1.12).

Stages, each timed:

1. **encode / generate** — w = E(photo on black, silhouette, noise); T_gen = G(w) (16 channels
   over the whole UV layout), one per photo;
2. **assemble** — the 21-channel texture [T_gen, T_rgb, mask, ring]: channel 19 is DINAR's
   ``mask`` (B_fill: sampled texels plus the one-texel ring the 3×3 splat closes) and channel 20
   its ``inpaint_mask`` (the ring alone, B_fill − B_smp), as the released weights expect.
   Several views of one person (**merge**, Eq. 5, §1.11) are blended per texel by the softmax
   over the views that saw it of cos/τ (DINAR: 10·cos, τ = 0.1; the texture stage's
   :func:`~avatarcli.texture.merge.merge_views`); the masks become the views' union, texels no
   view saw keep mask 0, and T_gen there is the views' mean;
3. **VQ encode** — the continuous, pre-quantisation latent;
4. **DDIM** — masked (RePaint-style) sampling in the latent, the known latent re-inserted every
   step (:mod:`avatarcli.inpaint.ddim`);
5. **decode** — codebook snapping and the VQ decoder (DINAR's ``diffusion_ntexture``);
6. **paste** — the known texels copied back over all 21 channels with a soft one-texel edge
   (Eq. 6, §1.10.8);
7. **colour adjust** (optional, DINAR's ``--finetune_back``) — per-channel scale α and shift β of
   the hallucinated colours, fitted through the neural render (of every view);
8. **refine** — the RGB channels fine-tuned through the neural render for 64 Adam steps,
   weighted per texel by the normal-angle map (the texture stage's
   :func:`~avatarcli.texture.refine.refine_texture`; LPIPS as in DINAR when the user installed
   it, ``avatar weights import lpips``, else 1 − SSIM, recorded as ``refine_perceptual``); a merged
   texture is fitted to all views at once, each view's gradient weighted per texel by its own
   normal-angle trust. As in DINAR's stage B, the other 18 channels then come from the VQ
   decoding everywhere (``DinarOptions.neural_from_decoded``).

Released DINAR runs single-view only; the merge follows the paper and the (unused) upstream
merge function, restricted to the views that saw a texel as the RGB merge is.

:func:`dinar_texture` (B independent photos) and :func:`merge_dinar_views` (B views of one
person) work on prepared tensors (tests need no perception or fitting);
:func:`create_dinar_avatar` / :func:`create_merged_dinar_avatar` prepare them from photo crops,
fitted meshes and cameras, and return an :class:`~avatarcli.avatar_file.Avatar`;
:func:`load_dinar_networks` loads the installed weights and stops before any work when one is
missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F

from avatarcli.errors import UserError
from avatarcli.pipelines.neural_render import (
    DINAR_UV_LAYOUT,
    NEURAL_CHANNELS,
    RENDERER_WEIGHTS,
    UV_LAYOUT_WEIGHTS,
    UVLayout,
    avatar_textures_from_texture21,
    body_uv_layout,
    load_dinar_uv_layout,
    manifest_sha256,
)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from avatarcli.avatar_file import Avatar
    from avatarcli.body import BodyModel
    from avatarcli.render import Camera

#: Installed weights a DINAR avatar is made with (registry names).
DINAR_WEIGHTS = (
    "dinar_encoder",
    "dinar_generator",
    "dinar_vq",
    "dinar_unet",
    RENDERER_WEIGHTS,
    UV_LAYOUT_WEIGHTS,
)

#: progress(stage, done, total)
StageProgress = Callable[[str, int, int], None]


@dataclass
class DinarNetworks:
    """The five networks (eval mode, one device) and the UV layout their texture lives in.

    ``layout`` None means "the body's own layout" (fine for random test weights; the official
    weights need DINAR's layout). ``weights`` maps registry names to the sha256 recorded in
    avatars made with these networks.
    """

    encoder: nn.Module
    generator: nn.Module
    vq: nn.Module
    unet: nn.Module
    renderer: nn.Module
    layout: UVLayout | None = None
    weights: dict[str, str] = field(default_factory=dict)
    #: the refinement's perceptual term when LPIPS is installed (DINAR's); None → 1 − SSIM
    lpips: nn.Module | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "generator": self.generator,
            "vq": self.vq,
            "unet": self.unet,
            "renderer": self.renderer,
        }

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def texture_size(self) -> int:
        return int(self.generator.config.texture_size)

    @property
    def image_size(self) -> int:
        return int(self.encoder.config.image_size)

    def to(self, device: torch.device | str) -> DinarNetworks:
        for net in self.modules().values():
            net.to(device).eval()
        layout = self.layout.to(device) if self.layout is not None else None
        lpips = self.lpips.to(device).eval() if self.lpips is not None else None
        return DinarNetworks(**self.modules(), layout=layout, weights=dict(self.weights), lpips=lpips)


@dataclass
class DinarOptions:
    """Knobs of :func:`dinar_texture`; defaults are the released DINAR pipeline."""

    steps: int = 200  # DDIM steps
    eta: float = 1.0  # DDIM stochasticity (1 = DINAR's DDPM-like variance)
    refine_steps: int = 64  # RGB fine-tuning steps (0 = stop after the paste)
    refine_lr: float = 2e-3
    ssim_weight: float = 0.2  # the refinement's perceptual term (LPIPS in DINAR)
    colour_adjust: bool = False  # fit α/β to the hallucinated colours first (``--finetune_back``)
    colour_steps: int = 64
    neural_from_decoded: bool = True  # after refining, channels 0–15/19–20 from the VQ decoding

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise UserError(f"--steps must be between 1 and 1000, got {self.steps}")
        if self.refine_steps < 0 or self.colour_steps < 0:
            raise UserError("refinement step counts cannot be negative")
        if not 0.0 <= self.eta <= 1.0:
            raise UserError(f"eta must be in [0, 1], got {self.eta}")


@dataclass
class DinarInputs:
    """Everything :func:`dinar_texture` needs for a batch of B photos (T = texture size).

    ``image`` (B,3,H,W) the person crop in [-1,1] on black (DINAR's ``input_rgb``) and ``mask``
    (B,1,H,W) its {0,1} silhouette, H = W = the encoder's input size (512). ``rgb_texture``
    (B,3,T,T) the sampled colours in [0,1] (0 where unknown), ``sampled`` (B_smp) and ``filled``
    (B_fill) (B,1,T,T) {0,1}, ``normal_angles`` (B,1,T,T) per-texel view cosine in [0,1].
    ``uv_render`` (B,2,H,W) in DINAR's convention and ``uv_mask`` (B,1,H,W) of the fitted mesh
    in the photo's camera are needed only for refinement / colour adjustment.
    ``uv_island_mask`` (1,1,T,T): 1 inside the UV layout (default: everywhere).
    """

    image: torch.Tensor
    mask: torch.Tensor
    rgb_texture: torch.Tensor
    sampled: torch.Tensor
    filled: torch.Tensor
    normal_angles: torch.Tensor
    uv_render: torch.Tensor | None = None
    uv_mask: torch.Tensor | None = None
    uv_island_mask: torch.Tensor | None = None


@dataclass
class MergedDinarInputs:
    """Several views' texture inputs merged into one texture (DINAR Eq. 5, fact sheet §1.11).

    Per texel, the views that sampled it (B_fill) are weighted by ``softmax_v(cos_v / τ)`` (the
    texture stage's :func:`~avatarcli.texture.merge.merge_views`); T_gen, complete in every view,
    is averaged over all views where none saw the texel (the diffusion model repaints those).
    """

    texture21: torch.Tensor  # (1,21,T,T) [T_gen, T_rgb, mask (B_fill ∪), ring (B_fill ∪ − B_smp ∪)]
    sampled: torch.Tensor  # (1,1,T,T) {0,1} union of the views' B_smp
    filled: torch.Tensor  # (1,1,T,T) {0,1} union of the views' B_fill
    normal_angles: torch.Tensor  # (1,1,T,T) best view cosine per texel (0 where none saw it)
    weights: torch.Tensor  # (V,1,T,T) each view's merge weight (0 where it did not sample)


@dataclass
class DinarTextureResult:
    texture: torch.Tensor  # (B,21,T,T) final texture
    pasted: torch.Tensor  # (B,21,T,T) after diffusion + paste (DINAR's stage-A ``ntexture``)
    decoded: torch.Tensor  # (B,21,T,T) VQ decoding of the sampled latent (``diffusion_ntexture``)
    blend_mask: torch.Tensor  # (B,1,T,T) weight of the source texture in ``pasted``
    generated: torch.Tensor  # (B,16,T,T) T_gen (merged over the views for a merge)
    colour_scale: torch.Tensor  # (B,3,1,1) α (1 without colour adjustment)
    colour_shift: torch.Tensor  # (B,3,1,1) β (0 without)
    refine_losses: list[list[float]] = field(default_factory=list)  # per item, loss before each step
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    merged: MergedDinarInputs | None = None  # what the views merged into (merge_dinar_views only)


class _StageTimer:
    """Wall-clock per stage; waits for the GPU so asynchronous kernels are charged correctly."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.timings: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self_inner):
                timer._sync()
                self_inner.start = time.perf_counter()

            def __exit__(self_inner, *exc):
                timer._sync()
                timer.timings[name] = timer.timings.get(name, 0.0) + time.perf_counter() - self_inner.start

        return _Stage()


def _check_inputs(inputs: DinarInputs, networks: DinarNetworks, need_render: bool) -> None:
    size, tex = networks.image_size, networks.texture_size
    if tuple(inputs.image.shape[-2:]) != (size, size):
        raise ValueError(f"the photo crop is {tuple(inputs.image.shape[-2:])}, the encoder takes {size}²")
    for name in ("rgb_texture", "sampled", "filled", "normal_angles"):
        if tuple(getattr(inputs, name).shape[-2:]) != (tex, tex):
            raise ValueError(f"{name} is {tuple(getattr(inputs, name).shape[-2:])}, the texture is {tex}²")
    if need_render and (inputs.uv_render is None or inputs.uv_mask is None):
        raise ValueError("refinement needs uv_render and uv_mask (set refine_steps=0 to skip it)")


def _render01(renderer: nn.Module, texture21: torch.Tensor, uv: torch.Tensor, uv_mask: torch.Tensor):
    """The neural render on white in [0, 1] (DINAR fine-tunes against the photo on white)."""
    return (renderer(texture21, uv, uv_mask).rgb + 1) / 2


def _generate(networks: DinarNetworks, image, mask, generator, timer: _StageTimer) -> torch.Tensor:
    """Stage 1: w = E(photo, silhouette, noise); T_gen = G(w), one per photo (B,16,T,T)."""
    with timer("encode"):
        w = networks.encoder(image, mask, generator=generator)
    with timer("generate"):
        return networks.generator(w, generator=generator)


class _Completed(NamedTuple):
    decoded: torch.Tensor  # (B,21,T,T)
    blend: torch.Tensor  # (B,1,T,T)
    pasted: torch.Tensor  # (B,21,T,T)


def _complete(
    networks: DinarNetworks,
    texture21: torch.Tensor,
    filled: torch.Tensor,
    islands: torch.Tensor | None,
    options: DinarOptions,
    generator: torch.Generator | None,
    timer: _StageTimer,
    say: StageProgress,
) -> _Completed:
    """Stages 3–6: VQ encode, masked DDIM in the latent, decode, paste the known texels back."""
    from avatarcli.inpaint.ddim import inpaint_latent
    from avatarcli.inpaint.texture import copy_back_mask, erode3x3

    with timer("vq_encode"):
        z = networks.vq.encode(texture21)
    with timer("setup"):  # diffusers' first import takes seconds; keep it out of the DDIM time
        import diffusers.schedulers  # noqa: F401
    latent_mask = F.interpolate(filled, size=z.shape[-2:], mode="nearest")
    cond = torch.cat([z, latent_mask], dim=1)
    with timer("ddim"):
        sample = inpaint_latent(
            networks.unet,
            z,
            cond,
            erode3x3(latent_mask),
            steps=options.steps,
            eta=options.eta,
            generator=generator,
            progress=lambda done, total: say("ddim", done, total),
        )
    with timer("decode"):
        decoded = networks.vq.decode(sample)
    with timer("paste"):
        islands = torch.ones_like(filled[:1]) if islands is None else islands
        blend = copy_back_mask(filled, islands.expand_as(filled))
        pasted = (1.0 - blend) * decoded + blend * texture21
    timer.timings["ddim_per_step"] = timer.timings["ddim"] / options.steps
    return _Completed(decoded, blend, pasted)


def dinar_texture(
    inputs: DinarInputs,
    networks: DinarNetworks,
    options: DinarOptions | None = None,
    generator: torch.Generator | None = None,
    progress: StageProgress | None = None,
) -> DinarTextureResult:
    """Complete the sampled texture of each photo with DINAR's networks (stages in the module doc).

    Each of the B photos is its own avatar. ``generator`` (on the networks' device) seeds every
    random draw: the encoder's noise channel, the generator's per-layer noise and the diffusion
    noise; equal seeds repeat exactly.
    """
    options = options or DinarOptions()
    device = networks.device
    need_render = options.refine_steps > 0 or options.colour_adjust
    _check_inputs(inputs, networks, need_render)
    timer = _StageTimer(device)
    say = progress or (lambda _stage, _done, _total: None)
    as_float = lambda x: x.to(device=device, dtype=torch.float32)  # noqa: E731
    image, mask = as_float(inputs.image), as_float(inputs.mask)
    sampled, filled = as_float(inputs.sampled), as_float(inputs.filled)
    islands = None if inputs.uv_island_mask is None else as_float(inputs.uv_island_mask)

    with torch.no_grad():
        generated = _generate(networks, image, mask, generator, timer)
        ring = (filled - sampled).clamp_min(0)
        texture21 = torch.cat([generated, as_float(inputs.rgb_texture), filled, ring], dim=1)
        done = _complete(networks, texture21, filled, islands, options, generator, timer, say)

    batch = image.shape[0]
    scale = torch.ones(batch, 3, 1, 1, device=device)
    shift = torch.zeros(batch, 3, 1, 1, device=device)
    losses: list[list[float]] = []
    final = done.pasted
    if need_render:
        finals = []
        for b in range(batch):
            one = slice(b, b + 1)
            item = _refine_item(
                networks.renderer,
                options,
                lpips=networks.lpips,
                pasted=done.pasted[one],
                decoded=done.decoded[one],
                blend=done.blend[one],
                filled=filled[one],
                normal_angles=as_float(inputs.normal_angles[one]),
                image=image[one],
                mask=mask[one],
                uv=as_float(inputs.uv_render[one]),
                uv_mask=as_float(inputs.uv_mask[one]),
                timer=timer,
                say=say,
            )
            finals.append(item.texture)
            scale[b], shift[b] = item.scale[0], item.shift[0]
            losses.append(item.losses)
        final = torch.cat(finals)
    return DinarTextureResult(
        texture=final.detach(),
        pasted=done.pasted,
        decoded=done.decoded,
        blend_mask=done.blend,
        generated=generated,
        colour_scale=scale,
        colour_shift=shift,
        refine_losses=losses,
        timings=timer.timings,
    )


def merge_dinar_inputs(
    generated: torch.Tensor,
    rgb_texture: torch.Tensor,
    sampled: torch.Tensor,
    filled: torch.Tensor,
    normal_angles: torch.Tensor,
    tau: float = 0.1,
) -> MergedDinarInputs:
    """Merge V views' texture inputs into one 21-channel texture (see :class:`MergedDinarInputs`).

    ``generated`` (V,16,T,T) T_gen per view, ``rgb_texture`` (V,3,T,T), ``sampled``/``filled``
    (V,1,T,T) {0,1}, ``normal_angles`` (V,1,T,T) in [0,1]. ``tau`` is the softmax temperature
    (DINAR: 10·cos, τ = 0.1); a small τ picks the most frontal view, a large one averages.
    """
    from avatarcli.texture.merge import merge_views

    if generated.shape[0] != rgb_texture.shape[0] or generated.shape[0] != filled.shape[0]:
        raise ValueError("generated, rgb_texture and the masks must be stacked per view")
    seen = filled > 0.5
    merged = merge_views(torch.cat([generated, rgb_texture], dim=1), seen, normal_angles, tau)
    any_view = merged.known[None].to(generated.dtype)  # (1,1,T,T)
    generated_merged = merged.rgb[None, : generated.shape[1]] * any_view
    generated_merged = generated_merged + generated.mean(dim=0, keepdim=True) * (1 - any_view)
    union_filled = any_view
    union_sampled = (sampled > 0.5).any(dim=0, keepdim=True).to(generated.dtype)
    ring = (union_filled - union_sampled).clamp_min(0)
    rgb = merged.rgb[None, generated.shape[1] :]
    texture21 = torch.cat([generated_merged, rgb, union_filled, ring], dim=1)
    logits = (normal_angles / tau).masked_fill(~seen, float("-inf"))
    weights = torch.softmax(torch.where(merged.known[None], logits, torch.zeros_like(logits)), dim=0)
    return MergedDinarInputs(
        texture21=texture21,
        sampled=union_sampled,
        filled=union_filled,
        normal_angles=merged.view_cos[None],
        weights=weights * any_view,
    )


def merge_dinar_views(
    inputs: DinarInputs,
    networks: DinarNetworks,
    options: DinarOptions | None = None,
    generator: torch.Generator | None = None,
    progress: StageProgress | None = None,
    *,
    tau: float = 0.1,
) -> DinarTextureResult:
    """One avatar's texture from the V photos in ``inputs`` (batch = views of one person).

    Each view gets its own T_gen (encoder + generator on that photo); the views' 21-channel
    inputs are merged (:func:`merge_dinar_inputs`; unseen texels keep mask 0); then one
    diffusion inpainting, decode and paste (Eq. 6), the optional colour adjustment and the RGB
    refinement against **all** views, each view's render gradient weighted per texel by its
    own normal-angle trust (so a texel follows the view that saw it most squarely). With one
    view this is exactly :func:`dinar_texture` (same seed, same result).
    """
    options = options or DinarOptions()
    if tau <= 0:
        raise UserError(f"--tau must be positive, got {tau}")
    device = networks.device
    need_render = options.refine_steps > 0 or options.colour_adjust
    _check_inputs(inputs, networks, need_render)
    timer = _StageTimer(device)
    say = progress or (lambda _stage, _done, _total: None)
    as_float = lambda x: x.to(device=device, dtype=torch.float32)  # noqa: E731
    image, mask = as_float(inputs.image), as_float(inputs.mask)
    islands = None if inputs.uv_island_mask is None else as_float(inputs.uv_island_mask)
    normal_angles = as_float(inputs.normal_angles)

    with torch.no_grad():
        generated = _generate(networks, image, mask, generator, timer)
        with timer("merge"):
            merged = merge_dinar_inputs(
                generated,
                as_float(inputs.rgb_texture),
                as_float(inputs.sampled),
                as_float(inputs.filled),
                normal_angles,
                tau,
            )
        done = _complete(networks, merged.texture21, merged.filled, islands, options, generator, timer, say)

    scale = torch.ones(1, 3, 1, 1, device=device)
    shift = torch.zeros(1, 3, 1, 1, device=device)
    final, losses = done.pasted, []
    if need_render:
        item = _refine_item(
            networks.renderer,
            options,
            lpips=networks.lpips,
            pasted=done.pasted,
            decoded=done.decoded,
            blend=done.blend,
            filled=merged.filled,
            normal_angles=merged.normal_angles,
            image=image,
            mask=mask,
            uv=as_float(inputs.uv_render),
            uv_mask=as_float(inputs.uv_mask),
            timer=timer,
            say=say,
            view_angles=normal_angles,
        )
        final, scale, shift, losses = item.texture, item.scale, item.shift, [item.losses]
    return DinarTextureResult(
        texture=final.detach(),
        pasted=done.pasted,
        decoded=done.decoded,
        blend_mask=done.blend,
        generated=merged.texture21[:, :NEURAL_CHANNELS],
        colour_scale=scale,
        colour_shift=shift,
        refine_losses=losses,
        timings=timer.timings,
        merged=merged,
    )


class _RefinedItem(NamedTuple):
    texture: torch.Tensor  # (1,21,T,T)
    scale: torch.Tensor  # (1,3,1,1) α
    shift: torch.Tensor  # (1,3,1,1) β
    losses: list[float]


def _per_view_gradients(texture: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """(V,C,T,T) copies of ``texture`` (1,C,T,T) whose gradients are scaled by ``share`` (V,1,T,T);
    the values are unchanged (x + 0, exactly)."""
    fixed = texture.detach()
    return fixed + (texture - fixed) * share


def _refine_item(
    renderer: nn.Module,
    options: DinarOptions,
    *,
    pasted: torch.Tensor,
    decoded: torch.Tensor,
    blend: torch.Tensor,
    filled: torch.Tensor,
    normal_angles: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    uv: torch.Tensor,
    uv_mask: torch.Tensor,
    timer: _StageTimer,
    say: StageProgress,
    view_angles: torch.Tensor | None = None,
    lpips: nn.Module | None = None,
) -> _RefinedItem:
    """DINAR's stage B for one texture seen by V ≥ 1 photos: optional α/β colour fit, then RGB
    refinement (§1.12) against all of them.

    ``image``/``mask``/``uv``/``uv_mask`` are stacked per view; ``filled`` and ``normal_angles``
    (1,1,T,T) are the texture's known texels and best view cosine (the step weight). With
    several views, ``view_angles`` (V,1,T,T) splits each texel's gradient between the views by
    their normal-angle trust (DINAR's gradient mask, per view, normalised over the views).
    """
    from avatarcli.inpaint.texture import erode3x3
    from avatarcli.texture.refine import photometric_loss, refine_texture, view_angle_weight

    views = image.shape[0]
    target = (image + 1) / 2 * mask + (1 - mask)  # the photos on white, [0, 1]
    loss_mask = erode3x3(uv_mask) * mask  # pixels both on the mesh and the person
    base = decoded if options.neural_from_decoded else pasted
    source_rgb = decoded[:, 16:19]
    share = None
    if views > 1 and view_angles is not None:
        trust = torch.cat([view_angle_weight(view_angles[v]) for v in range(views)])
        share = trust / trust.sum(dim=0, keepdim=True).clamp_min(1e-8)
    requires = [p.requires_grad for p in renderer.parameters()]
    renderer.requires_grad_(False)  # gradients flow to the texture only

    def texture_with(rgb: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, split: bool = False):
        """The 21-channel texture; ``split``: one copy per view, gradients shared out by view."""
        hallucinated = source_rgb * scale + shift
        if split and share is not None:
            rgb = _per_view_gradients(rgb, share)
        copies = rgb.shape[0]
        neural, masks = base[:, :16].expand(copies, -1, -1, -1), base[:, 19:].expand(copies, -1, -1, -1)
        return torch.cat([neural, rgb * blend + hallucinated * (1 - blend), masks], dim=1)

    def render(texture21: torch.Tensor) -> torch.Tensor:
        return _render01(renderer, texture21.expand(views, -1, -1, -1), uv, uv_mask)

    scale = torch.ones(1, 3, 1, 1, device=pasted.device)
    shift = torch.zeros(1, 3, 1, 1, device=pasted.device)
    try:
        if options.colour_adjust and options.colour_steps:
            with timer("colour_adjust"):
                scale, shift = scale.requires_grad_(True), shift.requires_grad_(True)
                optimiser = torch.optim.Adam([scale, shift], lr=options.refine_lr, betas=(0.0, 0.99))
                for step in range(options.colour_steps):
                    optimiser.zero_grad(set_to_none=True)
                    everywhere = torch.cat([base[:, :16], source_rgb * scale + shift, base[:, 19:]], dim=1)
                    rendered = render(everywhere)
                    photometric_loss(
                        rendered, target, loss_mask, ssim_weight=options.ssim_weight, lpips=lpips
                    ).backward()
                    optimiser.step()
                    say("colour", step + 1, options.colour_steps)
                scale, shift = scale.detach(), shift.detach()
        rgb = pasted[:, 16:19]
        item_losses: list[float] = []
        if options.refine_steps:
            with timer("refine"):
                result = refine_texture(
                    rgb,
                    filled[0],
                    lambda tex: render(texture_with(tex, scale, shift, split=True)),
                    target,
                    loss_mask,
                    normal_angles[0],
                    steps=options.refine_steps,
                    lr=options.refine_lr,
                    ssim_weight=options.ssim_weight,
                    lpips=lpips,
                )
            rgb, item_losses = result.texture[None], result.losses
            say("refine", options.refine_steps, options.refine_steps)
    finally:
        for p, flag in zip(renderer.parameters(), requires, strict=True):
            p.requires_grad_(flag)
    return _RefinedItem(texture_with(rgb, scale, shift).detach(), scale, shift, item_losses)


# ------------------------------------------------------------------------------------ networks
def load_dinar_networks(device: torch.device | str = "cpu", weights_dir: Path | None = None) -> DinarNetworks:
    """The installed DINAR networks, after checking every file exists (one line naming the first
    missing file and how to get it: the official checkpoint is CC BY-NC and never bundled).
    """
    from avatarcli.nets import load_network
    from avatarcli.nets.dinar_encoder import DinarEncoder
    from avatarcli.nets.dinar_generator import DinarTextureGenerator
    from avatarcli.nets.dinar_renderer import DinarRenderer
    from avatarcli.nets.dinar_unet import DinarUNet
    from avatarcli.nets.dinar_vq import DinarVQ
    from avatarcli.pipelines.perceptual import load_lpips_if_installed
    from avatarcli.weights_registry import require_weights

    paths = require_weights(DINAR_WEIGHTS, weights_dir)
    classes = {
        "dinar_encoder": DinarEncoder,
        "dinar_generator": DinarTextureGenerator,
        "dinar_vq": DinarVQ,
        "dinar_unet": DinarUNet,
        RENDERER_WEIGHTS: DinarRenderer,
    }
    nets = {name: load_network(cls, paths[name], device) for name, cls in classes.items()}
    return DinarNetworks(
        encoder=nets["dinar_encoder"],
        generator=nets["dinar_generator"],
        vq=nets["dinar_vq"],
        unet=nets["dinar_unet"],
        renderer=nets[RENDERER_WEIGHTS],
        layout=load_dinar_uv_layout(weights_dir, device),
        weights={name: manifest_sha256(name, weights_dir) or "" for name in DINAR_WEIGHTS},
        lpips=load_lpips_if_installed(device, weights_dir),
    )


def random_dinar_networks(
    size: Literal["tiny", "official"] = "tiny", seed: int = 0, device: torch.device | str = "cpu"
) -> DinarNetworks:
    """Networks with seeded random weights, for tests and benchmarks (never for real avatars).

    Parameters a fresh network initialises to zero (noise strengths, some biases) get small
    random values so every input actually matters.
    """
    from avatarcli.nets.dinar_encoder import DinarEncoder, DinarEncoderConfig
    from avatarcli.nets.dinar_generator import DinarGeneratorConfig, DinarTextureGenerator
    from avatarcli.nets.dinar_renderer import DinarRenderer, DinarRendererConfig
    from avatarcli.nets.dinar_unet import DinarUNet, DinarUNetConfig
    from avatarcli.nets.dinar_vq import DinarVQ, DinarVQConfig

    pick = "tiny" if size == "tiny" else "official"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = DinarNetworks(
            encoder=DinarEncoder(getattr(DinarEncoderConfig, pick)()),
            generator=DinarTextureGenerator(getattr(DinarGeneratorConfig, pick)()),
            vq=DinarVQ(getattr(DinarVQConfig, pick)()),
            unet=DinarUNet(getattr(DinarUNetConfig, pick)()),
            renderer=DinarRenderer(getattr(DinarRendererConfig, pick)()),
        )
        with torch.no_grad():
            for net in nets.modules().values():
                for p in net.parameters():
                    if not bool(p.any()):
                        p.normal_(0.0, 0.1)
    return nets.to(device)


# ------------------------------------------------------------------------------- avatar create
class DinarCrop(NamedTuple):
    photo: torch.Tensor  # (1,3,S,S) in [0,1], zero outside the source image
    mask: torch.Tensor  # (1,1,S,S) {0,1}
    camera: Camera  # the crop's camera (S×S)
    box: tuple[int, int, int]  # (left, top, side) of the square window in the source image


def _square_box(left: float, top: float, right: float, bottom: float, grow: float) -> tuple[float, ...]:
    """The box made square by stretching its short side, then scaled by ``grow`` about its centre."""
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half = max(right - left, bottom - top) / 2 * grow
    return cx - half, cy - half, cx + half, cy + half


def dinar_crop(
    photo: torch.Tensor, mask: torch.Tensor, vertices: torch.Tensor, camera: Camera, size: int = 512
) -> DinarCrop:
    """DINAR's person crop (§1.3): the square around the projected body and the silhouette.

    The projected-vertex box is made square and grown ×1.2; the silhouette's box is grown ×1.2
    and clamped to the image; the crop is the square of side = the union's width from the
    union's top-left corner, zero-padded where it leaves the image, resized to ``size``
    (bicubic with antialiasing for the photo, where DINAR uses PIL's default filter; the mask
    area-averaged and thresholded at 0.2 as DINAR does). The camera follows (K' = S·T·K).
    ``photo`` (1,3,H,W) in [0,1], ``mask`` (1,1,H,W) or (1,H,W), ``vertices`` (1,V,3) world.
    """
    height, width = photo.shape[-2:]
    mask = mask.reshape(1, 1, height, width).float()
    pixels, _ = camera.project(vertices.reshape(1, -1, 3).to(camera.K))
    x, y = pixels[0, :, 0], pixels[0, :, 1]
    body_box = _square_box(float(x.min()), float(y.min()), float(x.max()), float(y.max()), 1.2)
    rows, cols = torch.nonzero(mask[0, 0] > 0.5, as_tuple=True)
    if rows.numel() == 0:
        raise UserError("the person mask is empty; cannot crop the person for DINAR")
    sl, st, sr, sb = float(cols.min()), float(rows.min()), float(cols.max()) + 1, float(rows.max()) + 1
    cx, cy, half_w, half_h = (sl + sr) / 2, (st + sb) / 2, (sr - sl) / 2 * 1.2, (sb - st) / 2 * 1.2
    mask_box = (max(cx - half_w, 0), max(cy - half_h, 0), min(cx + half_w, width), min(cy + half_h, height))
    left, top = int(min(body_box[0], mask_box[0])), int(min(body_box[1], mask_box[1]))
    side = max(1, int(round(max(body_box[2], mask_box[2]) - left)))
    pad = (max(0, -left), max(0, left + side - width), max(0, -top), max(0, top + side - height))

    def window(image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image, pad)
        x0, y0 = left + pad[0], top + pad[2]
        return padded[..., y0 : y0 + side, x0 : x0 + side]

    crop = F.interpolate(window(photo.float()), size=(size, size), mode="bicubic", antialias=True)
    crop_mask = F.interpolate(window(mask), size=(size, size), mode="area" if side > size else "bilinear")
    cam = camera.crop(left, top, side, side).scale(size / side)
    cam = type(cam)(cam.K, cam.R, cam.t, size, size)
    return DinarCrop(crop.clamp(0, 1), (crop_mask > 0.2).float(), cam, (left, top, side))


class DinarView(NamedTuple):
    """One fitted photo as DINAR sees it: the square crop and its mesh and camera."""

    photo: torch.Tensor  # (1,3,S,S) person crop in [0,1], S = the encoder's input size
    mask: torch.Tensor  # (1,1,S,S) or (1,S,S) person silhouette
    vertices: torch.Tensor  # (1,V,3) fitted, posed body in world space
    camera: Camera  # the crop's camera (S×S)


def _view_inputs(view: DinarView, faces: torch.Tensor, layout: UVLayout, size: int, device) -> DinarInputs:
    """A view's texture inputs in ``layout`` (batch 1; no island mask, the caller adds it)."""
    from avatarcli.render import dinar_uv_image, rasterize, render_uv, view_cosine
    from avatarcli.texture.sampling import sample_rgb_texture

    photo = view.photo[None] if view.photo.dim() == 3 else view.photo
    if photo.shape[0] != 1:
        raise ValueError("each DINAR view is one photo (batch 1)")
    photo = photo.to(device=device, dtype=torch.float32)
    mask = view.mask.to(device=device, dtype=torch.float32).reshape(1, 1, *photo.shape[-2:])
    vertices = view.vertices.to(device=device, dtype=torch.float32).reshape(1, -1, 3)
    camera = view.camera.to(device)
    with torch.no_grad():
        fragments = rasterize(vertices, faces, camera, cull_backfaces=True)
        uv01 = render_uv(fragments, layout.uv, layout.uv_faces)
        # DINAR's normal-angle map: cosine with the optical axis, not per-pixel rays (§1.8)
        cos = view_cosine(vertices, faces, fragments, camera, per_pixel_rays=False)
        sampled = sample_rgb_texture(photo, mask, uv01, fragments.mask, size, view_cos=cos)
    return DinarInputs(
        image=(photo * mask) * 2 - 1,
        mask=(mask > 0.5).float(),
        rgb_texture=sampled.rgb,
        sampled=sampled.sampled.float(),
        filled=sampled.filled.float(),
        normal_angles=sampled.view_cos,
        uv_render=dinar_uv_image(uv01, fragments.mask),
        uv_mask=fragments.mask.unsqueeze(1).float(),
    )


def create_dinar_avatar(
    photo: torch.Tensor,
    person_mask: torch.Tensor,
    vertices: torch.Tensor,
    camera: Camera,
    body: BodyModel,
    shape: torch.Tensor,
    networks: DinarNetworks,
    options: DinarOptions | None = None,
    *,
    seed: int = 0,
    views: list[dict] | None = None,
    provenance: dict | None = None,
    progress: StageProgress | None = None,
) -> tuple[Avatar, DinarTextureResult]:
    """One photo → a DINAR avatar (textures in the networks' UV layout).

    Args:
        photo: (1,3,S,S) the square person crop in [0,1], S = the encoder's input size (512),
            as DINAR crops it (§1.3, :func:`dinar_crop`); ``person_mask`` (1,1,S,S) or (1,S,S).
        vertices: (1,V,3) the fitted, posed body in world space; ``camera`` the crop's camera
            (S×S; DINAR's is f = 5000 px scaled by the crop, identity rotation).
        body, shape: the body model the fit used and its shape vector (stored in the avatar).
            With official weights the body must be ``smplx`` (DINAR's layout has its faces).
        networks: from :func:`load_dinar_networks` (or :func:`random_dinar_networks` in tests).
        seed: seeds every random draw; recorded in the avatar's provenance.
    """
    return create_merged_dinar_avatar(
        [DinarView(photo, person_mask, vertices, camera)], body, shape, networks, options,
        seed=seed, views=views, provenance=provenance, progress=progress,
    )  # fmt: skip


def create_merged_dinar_avatar(
    photos: Sequence[DinarView],
    body: BodyModel,
    shape: torch.Tensor,
    networks: DinarNetworks,
    options: DinarOptions | None = None,
    *,
    tau: float = 0.1,
    seed: int = 0,
    views: list[dict] | None = None,
    provenance: dict | None = None,
    progress: StageProgress | None = None,
) -> tuple[Avatar, DinarTextureResult]:
    """Several fitted photos of one person (sharing ``shape``) → one DINAR avatar.

    Each photo's texture inputs are prepared as in :func:`create_dinar_avatar`, then merged and
    completed by :func:`merge_dinar_views` (softmax temperature ``tau``). One photo gives
    exactly :func:`create_dinar_avatar`'s avatar. ``views`` are the avatar's view records.
    """
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.dinar_uv import uv_island_mask

    if not photos:
        raise ValueError("at least one photo is needed")
    options = options or DinarOptions()
    device = networks.device
    layout = (networks.layout or body_uv_layout(body)).to(device)
    if layout.name == DINAR_UV_LAYOUT and layout.uv_faces.shape[0] != body.faces.shape[0]:
        raise UserError(
            f"DINAR's UV layout is made for the SMPL-X mesh ({layout.uv_faces.shape[0]} faces); the "
            f"{body.name!r} body has {body.faces.shape[0]}: use --body smplx with --method dinar"
        )
    faces = body.faces.to(device)
    size = networks.texture_size
    per_view = [_view_inputs(view, faces, layout, size, device) for view in photos]
    islands = uv_island_mask(layout.uv, layout.uv_faces, size).to(device).reshape(1, 1, size, size)
    stacked = {name: torch.cat([getattr(v, name) for v in per_view]) for name in _STACKED_INPUTS}
    inputs = DinarInputs(**stacked, uv_island_mask=islands.float())
    generator = torch.Generator(device=device).manual_seed(int(seed))
    result = merge_dinar_views(inputs, networks, options, generator, progress, tau=tau)
    merged = result.merged
    params = asdict(options) if len(photos) == 1 else {**asdict(options), "tau": float(tau)}
    record = {"method": "dinar", "seed": int(seed), "params": params}
    record["refine_perceptual"] = "lpips_vgg" if networks.lpips is not None else "ssim"
    record["timings"] = {k: round(v, 4) for k, v in result.timings.items()}
    record.update(provenance or {})
    avatar = Avatar(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=shape.detach().float().cpu().reshape(-1),
        uv_layout=layout.name,
        textures=avatar_textures_from_texture21(result.texture[0], merged.sampled[0], merged.filled[0]),
        views=list(views or []),
        weights={k: v for k, v in networks.weights.items() if v},
        provenance=record,
    )
    return avatar, result


_STACKED_INPUTS = (
    "image", "mask", "rgb_texture", "sampled", "filled", "normal_angles", "uv_render", "uv_mask",
)  # fmt: skip
