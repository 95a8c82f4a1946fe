"""The neural part of ``avatar create --method dinar``: one photo's sampled texture → a complete
21-channel DINAR texture (fact sheet §1.5–§1.12).

Stages, each timed:

1. **encode / generate** — w = E(photo on black, silhouette, noise); T_gen = G(w) (16 channels
   over the whole UV layout);
2. **assemble** — the 21-channel texture [T_gen, T_rgb, mask, ring]: channel 19 is DINAR's
   ``mask`` (B_fill: sampled texels plus the one-texel ring the 3×3 splat closes) and channel 20
   its ``inpaint_mask`` (the ring alone, B_fill − B_smp), as the released weights expect;
3. **VQ encode** — the continuous, pre-quantisation latent;
4. **DDIM** — masked (RePaint-style) sampling in the latent, the known latent re-inserted every
   step (:mod:`avatarcli.inpaint.ddim`);
5. **decode** — codebook snapping and the VQ decoder (DINAR's ``diffusion_ntexture``);
6. **paste** — the known texels copied back over all 21 channels with a soft one-texel edge
   (Eq. 6, §1.10.8);
7. **colour adjust** (optional, DINAR's ``--finetune_back``) — per-channel scale α and shift β of
   the hallucinated colours, fitted through the neural render;
8. **refine** — the RGB channels fine-tuned through the neural render for 64 Adam steps,
   weighted per texel by the normal-angle map (the texture stage's
   :func:`~avatarcli.texture.refine.refine_texture`; SSIM instead of LPIPS, see there). As in
   DINAR's stage B, the other 18 channels then come from the VQ decoding everywhere
   (``DinarOptions.neural_from_decoded``).

:func:`dinar_texture` works on prepared tensors (tests need no perception or fitting);
:func:`create_dinar_avatar` prepares them from a photo crop, a fitted mesh and its camera, and
returns an :class:`~avatarcli.avatar_file.Avatar`; :func:`load_dinar_networks` loads the installed
weights and stops before any work when one is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F

from avatarcli.errors import UserError
from avatarcli.pipelines.neural_render import (
    DINAR_UV_LAYOUT,
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
        return DinarNetworks(**self.modules(), layout=layout, weights=dict(self.weights))


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
class DinarTextureResult:
    texture: torch.Tensor  # (B,21,T,T) final texture
    pasted: torch.Tensor  # (B,21,T,T) after diffusion + paste (DINAR's stage-A ``ntexture``)
    decoded: torch.Tensor  # (B,21,T,T) VQ decoding of the sampled latent (``diffusion_ntexture``)
    blend_mask: torch.Tensor  # (B,1,T,T) weight of the source texture in ``pasted``
    generated: torch.Tensor  # (B,16,T,T) T_gen
    colour_scale: torch.Tensor  # (B,3,1,1) α (1 without colour adjustment)
    colour_shift: torch.Tensor  # (B,3,1,1) β (0 without)
    refine_losses: list[list[float]] = field(default_factory=list)  # per item, loss before each step
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


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


def dinar_texture(
    inputs: DinarInputs,
    networks: DinarNetworks,
    options: DinarOptions | None = None,
    generator: torch.Generator | None = None,
    progress: StageProgress | None = None,
) -> DinarTextureResult:
    """Complete the sampled texture of each photo with DINAR's networks (stages in the module doc).

    ``generator`` (on the networks' device) seeds every random draw: the encoder's noise
    channel, the generator's per-layer noise and the diffusion noise; equal seeds repeat exactly.
    """
    from avatarcli.inpaint.ddim import inpaint_latent
    from avatarcli.inpaint.texture import copy_back_mask, erode3x3

    options = options or DinarOptions()
    device = networks.device
    need_render = options.refine_steps > 0 or options.colour_adjust
    _check_inputs(inputs, networks, need_render)
    timer = _StageTimer(device)
    say = progress or (lambda _stage, _done, _total: None)
    as_float = lambda x: x.to(device=device, dtype=torch.float32)  # noqa: E731
    image, mask = as_float(inputs.image), as_float(inputs.mask)
    sampled, filled = as_float(inputs.sampled), as_float(inputs.filled)
    batch = image.shape[0]

    with torch.no_grad():
        with timer("encode"):
            w = networks.encoder(image, mask, generator=generator)
        with timer("generate"):
            generated = networks.generator(w, generator=generator)
        ring = (filled - sampled).clamp_min(0)
        texture21 = torch.cat([generated, as_float(inputs.rgb_texture), filled, ring], dim=1)
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
            islands = inputs.uv_island_mask
            islands = torch.ones_like(filled[:1]) if islands is None else as_float(islands)
            blend = copy_back_mask(filled, islands.expand_as(filled))
            pasted = (1.0 - blend) * decoded + blend * texture21
    timer.timings["ddim_per_step"] = timer.timings["ddim"] / options.steps

    scale = torch.ones(batch, 3, 1, 1, device=device)
    shift = torch.zeros(batch, 3, 1, 1, device=device)
    losses: list[list[float]] = []
    final = pasted
    if need_render:
        finals = []
        for b in range(batch):
            one = slice(b, b + 1)
            item = _refine_item(
                networks.renderer,
                inputs,
                options,
                b,
                pasted=pasted[one],
                decoded=decoded[one],
                blend=blend[one],
                image=image[one],
                mask=mask[one],
                timer=timer,
                say=say,
            )
            finals.append(item.texture)
            scale[b], shift[b] = item.scale[0], item.shift[0]
            losses.append(item.losses)
        final = torch.cat(finals)
    return DinarTextureResult(
        texture=final.detach(),
        pasted=pasted,
        decoded=decoded,
        blend_mask=blend,
        generated=generated,
        colour_scale=scale,
        colour_shift=shift,
        refine_losses=losses,
        timings=timer.timings,
    )


class _RefinedItem(NamedTuple):
    texture: torch.Tensor  # (1,21,T,T)
    scale: torch.Tensor  # (1,3,1,1) α
    shift: torch.Tensor  # (1,3,1,1) β
    losses: list[float]


def _refine_item(
    renderer: nn.Module,
    inputs: DinarInputs,
    options: DinarOptions,
    b: int,
    *,
    pasted: torch.Tensor,
    decoded: torch.Tensor,
    blend: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    timer: _StageTimer,
    say: StageProgress,
) -> _RefinedItem:
    """DINAR's stage B for one photo: optional α/β colour fit, then RGB refinement (§1.12)."""
    from avatarcli.inpaint.texture import erode3x3
    from avatarcli.texture.refine import photometric_loss, refine_texture

    device = pasted.device
    uv = inputs.uv_render[b : b + 1].to(device=device, dtype=torch.float32)
    uv_mask = inputs.uv_mask[b : b + 1].to(device=device, dtype=torch.float32)
    target = (image + 1) / 2 * mask + (1 - mask)  # the photo on white, [0, 1]
    loss_mask = erode3x3(uv_mask) * mask  # pixels both on the mesh and the person
    base = decoded if options.neural_from_decoded else pasted
    source_rgb = decoded[:, 16:19]
    requires = [p.requires_grad for p in renderer.parameters()]
    renderer.requires_grad_(False)  # gradients flow to the texture only

    def texture_with(rgb: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        hallucinated = source_rgb * scale + shift
        return torch.cat([base[:, :16], rgb * blend + hallucinated * (1 - blend), base[:, 19:]], dim=1)

    scale = torch.ones(1, 3, 1, 1, device=device)
    shift = torch.zeros(1, 3, 1, 1, device=device)
    try:
        if options.colour_adjust and options.colour_steps:
            with timer("colour_adjust"):
                scale, shift = scale.requires_grad_(True), shift.requires_grad_(True)
                optimiser = torch.optim.Adam([scale, shift], lr=options.refine_lr, betas=(0.0, 0.99))
                for step in range(options.colour_steps):
                    optimiser.zero_grad(set_to_none=True)
                    everywhere = torch.cat([base[:, :16], source_rgb * scale + shift, base[:, 19:]], dim=1)
                    rendered = _render01(renderer, everywhere, uv, uv_mask)
                    photometric_loss(rendered, target, loss_mask, ssim_weight=options.ssim_weight).backward()
                    optimiser.step()
                    say("colour", step + 1, options.colour_steps)
                scale, shift = scale.detach(), shift.detach()
        rgb = pasted[:, 16:19]
        item_losses: list[float] = []
        if options.refine_steps:
            with timer("refine"):
                result = refine_texture(
                    rgb,
                    inputs.filled[b].to(device),
                    lambda tex: _render01(renderer, texture_with(tex, scale, shift), uv, uv_mask),
                    target,
                    loss_mask,
                    inputs.normal_angles[b].to(device),
                    steps=options.refine_steps,
                    lr=options.refine_lr,
                    ssim_weight=options.ssim_weight,
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
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.dinar_uv import uv_island_mask
    from avatarcli.render import dinar_uv_image, rasterize, render_uv, view_cosine
    from avatarcli.texture.sampling import sample_rgb_texture

    options = options or DinarOptions()
    device = networks.device
    layout = (networks.layout or body_uv_layout(body)).to(device)
    if layout.name == DINAR_UV_LAYOUT and layout.uv_faces.shape[0] != body.faces.shape[0]:
        raise UserError(
            f"DINAR's UV layout is made for the SMPL-X mesh ({layout.uv_faces.shape[0]} faces); the "
            f"{body.name!r} body has {body.faces.shape[0]}: use --body smplx with --method dinar"
        )
    if photo.dim() == 3:
        photo = photo[None]
    if photo.shape[0] != 1:
        raise ValueError("create_dinar_avatar makes one avatar from one photo (batch 1)")
    photo = photo.to(device=device, dtype=torch.float32)
    mask = person_mask.to(device=device, dtype=torch.float32).reshape(1, 1, *photo.shape[-2:])
    vertices = vertices.to(device=device, dtype=torch.float32).reshape(1, -1, 3)
    camera = camera.to(device)
    faces = body.faces.to(device)
    size = networks.texture_size

    with torch.no_grad():
        fragments = rasterize(vertices, faces, camera, cull_backfaces=True)
        uv01 = render_uv(fragments, layout.uv, layout.uv_faces)
        # DINAR's normal-angle map: cosine with the optical axis, not per-pixel rays (§1.8)
        cos = view_cosine(vertices, faces, fragments, camera, per_pixel_rays=False)
        sampled = sample_rgb_texture(photo, mask, uv01, fragments.mask, size, view_cos=cos)
        islands = uv_island_mask(layout.uv, layout.uv_faces, size).to(device).reshape(1, 1, size, size)
    inputs = DinarInputs(
        image=(photo * mask) * 2 - 1,
        mask=(mask > 0.5).float(),
        rgb_texture=sampled.rgb,
        sampled=sampled.sampled.float(),
        filled=sampled.filled.float(),
        normal_angles=sampled.view_cos,
        uv_render=dinar_uv_image(uv01, fragments.mask),
        uv_mask=fragments.mask.unsqueeze(1).float(),
        uv_island_mask=islands.float(),
    )
    generator = torch.Generator(device=device).manual_seed(int(seed))
    result = dinar_texture(inputs, networks, options, generator, progress)
    record = {"method": "dinar", "seed": int(seed), "params": asdict(options)}
    record["timings"] = {k: round(v, 4) for k, v in result.timings.items()}
    record.update(provenance or {})
    avatar = Avatar(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=shape.detach().float().cpu().reshape(-1),
        uv_layout=layout.name,
        textures=avatar_textures_from_texture21(result.texture[0], sampled.sampled[0], sampled.filled[0]),
        views=list(views or []),
        weights={k: v for k, v in networks.weights.items() if v},
        provenance=record,
    )
    return avatar, result
