"""StylePeople one/few-photo fitting: the neural texture of a person from fitted photos.

The official ``infer_texture.py`` procedure (fact sheet §5.3), re-implemented:

1. every photo is cropped square around its projected body (box ×1.2), the target is the
   photo times its person mask on black, at ``image_size`` (1024 upstream); the uv render is
   made at half that size and the renderer doubles it back;
2. initialisation: a W+ latent (1, n_latent, style_dim) from the EfficientNet encoder
   (:class:`avatarcli.nets.sp_encoder.SPEncoder`, when its weights are installed) applied to the
   targets resized to its input side (512 upstream), averaged over the photos; fresh seeded
   noise maps, a snapshot of the generator weights and the initial texture G(latent, noise);
3. four staged optimisations, Adam rebuilt at each stage, all photos in one batch (losses
   averaged): the W+ latent → the synthesis weights → the noise maps → the texture itself, with
   the official iteration counts, learning rates, loss weights and deviation penalties
   (:data:`OFFICIAL_STAGES`).

Differences, reported in :attr:`SPFitResult.notes`:

- **LPIPS only when installed.** LPIPS needs pretrained VGG weights that avatarcli never
  downloads; with ``lpips_vgg`` imported (``avatar weights import lpips``) the image and face
  terms are LPIPS-VGG with the official weights, otherwise their weight goes to a structural
  term, ``1 − SSIM`` (and :data:`LPIPS_NOTE` says so). The MSE term is kept as upstream has it.
- **Without the encoder** (``stylepeople_encoder`` not installed) the latent starts at the
  generator's mean latent (the truncation centre, every row of W+ equal), so the first stage
  starts from "the average person" rather than from a guess of this person.

The encoder sees what upstream feeds it: the target (photo × mask, in [-1, 1] on black), resized
bilinearly without antialiasing (as ``F.interpolate`` and kornia's ``resize`` do by default).

The face term uses square crops located from face landmarks (OpenPose-68 rule, also applied to
MediaPipe's face mesh with the corresponding points); photos without landmarks get none.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from avatarcli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.lpips import LPIPS
    from avatarcli.nets.sp_generator import SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer
    from avatarcli.render import Camera
    from avatarcli.texture.build import TextureView

#: progress(stage, done, total, loss): called after every optimisation step.
FitProgress = Callable[[str, int, int, float], None]
#: An image encoder: (B, 3, S, S) target crops in [-1, 1] → (B, n_latent, style_dim) W+ latents.
#: An ``input_size`` attribute, when present, is the side S the crops are resized to (else 512).
LatentEncoder = Callable[[torch.Tensor], torch.Tensor]

STAGE_NAMES = ("latent", "generator", "noise", "texture")
#: Side of the square face crops compared by the face term (upstream: 256).
FACE_CROP_SIZE = 256
#: Side the encoder sees when it does not say (``input_size``); upstream resizes the target to 512.
ENCODER_INPUT_SIZE = 512

LPIPS_NOTE = (
    "LPIPS is not used (its VGG weights are not installed: `avatar weights import lpips "
    "vgg16-397923af.pth vgg.pth`): its weight goes to a 1 - SSIM structural term instead, next to "
    "the usual MSE"
)
MEAN_LATENT_NOTE = (
    "initialised from the generator's mean latent, not from the StylePeople encoder (not installed: "
    "`avatar weights import stylepeople generative_model.pth --encoder encoder.pth`): the fit starts "
    "from the average person"
)
ENCODER_WEIGHTS = "stylepeople_encoder"


@dataclass(frozen=True)
class SPStage:
    """One optimisation stage: what it optimises, for how long, and the weights of its loss terms.

    ``perceptual`` is upstream's LPIPS weight, applied to LPIPS when it is installed and to
    ``1 − SSIM`` otherwise; ``face`` weights the same term on face crops. The deviations are
    mean absolute differences from the initial latent, the generator snapshot and the initial
    texture.
    """

    name: str  # one of STAGE_NAMES: "latent" | "generator" | "noise" | "texture"
    iters: int
    lr: float
    perceptual: float = 1.0
    mse: float = 0.5
    face: float = 0.0
    latent_deviation: float = 0.0
    generator_deviation: float = 0.0
    texture_deviation: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {self.name!r}; stages are {', '.join(STAGE_NAMES)}")
        if self.iters < 0 or self.lr <= 0:
            raise ValueError(f"stage {self.name}: iters must be ≥ 0 and lr > 0")


#: ``inference_module/config.yaml``: 100 + 70 + 30 + 200 iterations (fact sheet §5.3).
OFFICIAL_STAGES: tuple[SPStage, ...] = (
    SPStage("latent", iters=100, lr=0.01, face=0.5, latent_deviation=0.1),
    SPStage("generator", iters=70, lr=0.01, face=1.0, generator_deviation=1.0),
    SPStage("noise", iters=30, lr=0.1, face=0.0),
    SPStage("texture", iters=200, lr=0.15, face=2.0, texture_deviation=0.1),
)


@dataclass(frozen=True)
class SPFitOptions:
    """Settings of :func:`fit_stylepeople`; the defaults are the official ones.

    Early stop: a stage ends when its loss has not improved by more than ``min_delta`` for
    ``patience`` steps (``None``: never), and the whole fit ends once ``max_seconds`` have passed
    (the texture of that moment is the result).
    """

    stages: tuple[SPStage, ...] = OFFICIAL_STAGES
    image_size: int = 1024  # the target/render side; the uv render is half of it
    crop_scale: float = 1.2  # the projected-body box is grown by this before cropping
    use_face: bool = True
    mean_latent_samples: int = 10_000  # as upstream (computed there, then overwritten)
    patience: int | None = None
    min_delta: float = 1e-4
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.image_size < 64 or self.image_size % 64:
            raise UserError(f"the StylePeople image size must be a multiple of 64, got {self.image_size}")
        if self.patience is not None and self.patience < 1:
            raise UserError("--patience must be at least 1")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise UserError("--max-seconds must be positive")

    def with_iters(self, **iters: int) -> SPFitOptions:
        """The same settings with some stages' iteration counts changed, e.g. ``texture=50``."""
        unknown = set(iters) - set(STAGE_NAMES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}")
        stages = tuple(replace(s, iters=iters.get(s.name, s.iters)) for s in self.stages)
        return replace(self, stages=stages)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SPFitResult:
    texture: torch.Tensor  # (16, T, T) float32, the fitted neural texture
    latent: torch.Tensor  # (1, n_latent, style_dim) the final W+ latent
    initial_texture: torch.Tensor  # (16, T, T) G(initial latent, initial noise)
    init: str  # "encoder" | "mean_latent"
    losses: dict[str, list[float]] = field(default_factory=dict)  # per stage, one per step
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (+ "init")
    stopped_early: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    perceptual: str = "ssim"  # the perceptual term used: "lpips_vgg" | "ssim"

    def summary(self) -> dict:
        """JSON-friendly: perceptual term, steps run, first/last loss per stage, timings, notes."""
        return {
            "init": self.init,
            "perceptual": self.perceptual,
            "steps": {k: len(v) for k, v in self.losses.items()},
            "loss_first": {k: round(v[0], 5) for k, v in self.losses.items() if v},
            "loss_last": {k: round(v[-1], 5) for k, v in self.losses.items() if v},
            "stopped_early": dict(self.stopped_early),
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------ face boxes
class FaceBox(NamedTuple):
    """A square face window in the photo's pixels: centre and side."""

    cx: float
    cy: float
    side: float


#: (chin, nose bridge top) landmark indices per face format.
_FACE_POINTS = {"openpose70": (8, 27), "mediapipe468": (152, 168), "mediapipe478": (152, 168)}


def face_box(face: np.ndarray | None, face_format: str, min_confidence: float = 0.1) -> FaceBox | None:
    """StylePeople's face window from face landmarks (x, y, confidence) in photo pixels.

    Upstream rule on OpenPose-68: h = chin(8).y − nose-bridge(27).y; the box spans from
    bridge − 0.47·h to chin + 0.2·h and is square, centred on the landmarks' x midpoint. For
    MediaPipe's mesh the same rule uses its chin (152) and mid-eyes bridge (168). ``None`` when
    there are no landmarks, the format is unknown, or the points are missing or degenerate.
    """
    if face is None or face_format not in _FACE_POINTS:
        return None
    points = np.asarray(face, np.float64)
    if face_format == "openpose70":
        points = points[:68]
    chin_i, bridge_i = _FACE_POINTS[face_format]
    conf = points[:, 2] if points.shape[1] > 2 else np.ones(len(points))
    valid = conf >= min_confidence
    if len(points) <= max(chin_i, bridge_i) or not (valid[chin_i] and valid[bridge_i]):
        return None
    height = points[chin_i, 1] - points[bridge_i, 1]
    if not height > 0:
        return None
    top, bottom = points[bridge_i, 1] - 0.47 * height, points[chin_i, 1] + 0.2 * height
    xs = points[valid, 0]
    return FaceBox(float((xs.min() + xs.max()) / 2), float((top + bottom) / 2), float(bottom - top))


def face_box_of(perception) -> FaceBox | None:
    """:func:`face_box` of an :class:`avatarcli.perception.Perception` (its ``face`` landmarks)."""
    return face_box(getattr(perception, "face", None), getattr(perception, "face_format", ""))


# ----------------------------------------------------------------------------------- the targets
@dataclass
class SPTargets:
    """All photos cropped the StylePeople way, batched: what every step compares against."""

    target: torch.Tensor  # (B, 3, S, S) photo·mask in [-1, 1] on black
    mask: torch.Tensor  # (B, 1, S, S) person mask in [0, 1]
    uv: torch.Tensor  # (B, 2, S/2, S/2) renderer uv input (2uv − 1 on the body, −10 off it)
    cameras: list  # per view, the crop's camera at S × S
    faces: list[FaceBox | None]  # per view, the face window in crop pixels
    face_grid: torch.Tensor | None  # (B, F, F, 2) grid_sample grid of the face crops (None: none)
    face_valid: torch.Tensor  # (B,) 1 where the view has a face window


def stylepeople_crop(
    view: TextureView, size: int, scale: float = 1.2
) -> tuple[torch.Tensor, torch.Tensor, Camera]:
    """The photo (1,3,S,S), mask (1,1,S,S) and camera of the square around the projected body.

    Upstream: the projected-vertex box grown ×1.2 and made square; outside the photo is black.
    The window is resized with antialiasing (upstream samples bilinearly without it).
    """
    photo, camera = view.image.float(), view.camera
    height, width = photo.shape[-2:]
    mask = view.mask.reshape(1, 1, height, width).float()
    pixels, _ = camera.project(view.vertices.reshape(1, -1, 3).to(camera.K))
    x, y = pixels[0, :, 0], pixels[0, :, 1]
    cx, cy = float(x.min() + x.max()) / 2, float(y.min() + y.max()) / 2
    side = max(2, math.ceil(max(float(x.max() - x.min()), float(y.max() - y.min())) * scale))
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = (max(0, -left), max(0, left + side - width), max(0, -top), max(0, top + side - height))

    def window(image: torch.Tensor) -> torch.Tensor:
        x0, y0 = left + pad[0], top + pad[2]
        return F.pad(image, pad)[..., y0 : y0 + side, x0 : x0 + side]

    resize = {"size": (size, size), "mode": "bilinear", "align_corners": False, "antialias": side > size}
    crop = F.interpolate(window(photo), **resize).clamp(0, 1)
    crop_mask = F.interpolate(window(mask), **resize).clamp(0, 1)
    cam = camera.crop(left, top, side, side).scale(size / side)
    cam = type(cam)(cam.K, cam.R, cam.t, size, size)
    return crop, crop_mask, cam


def _face_in_crop(box: FaceBox, view_camera: Camera, crop_camera: Camera) -> FaceBox:
    """Map a face window from photo pixels to crop pixels (the crop is a shift and a zoom)."""
    zoom = float(crop_camera.K[0, 0, 0] / view_camera.K[0, 0, 0])
    cx = (box.cx - float(view_camera.K[0, 0, 2])) * zoom + float(crop_camera.K[0, 0, 2])
    cy = (box.cy - float(view_camera.K[0, 1, 2])) * zoom + float(crop_camera.K[0, 1, 2])
    return FaceBox(cx, cy, box.side * zoom)


def _face_grid(box: FaceBox, image_size: int, crop: int, device: torch.device) -> torch.Tensor:
    """A (crop, crop, 2) grid_sample grid (align_corners=False) reading ``box`` out of the image."""
    steps = (torch.arange(crop, device=device, dtype=torch.float32) + 0.5) / crop - 0.5
    xs = (box.cx + steps * box.side) / image_size * 2 - 1
    ys = (box.cy + steps * box.side) / image_size * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def prepare_targets(
    views: Sequence[TextureView],
    body,
    image_size: int,
    *,
    faces: Sequence[FaceBox | None] | None = None,
    crop_scale: float = 1.2,
    face_crop: int = FACE_CROP_SIZE,
) -> SPTargets:
    """Crop every view, render its uv input once (the body does not move during the fit)."""
    from avatarcli.pipelines.sp_render import uv_input

    if faces is not None and len(faces) != len(views):
        raise ValueError(f"{len(faces)} face boxes for {len(views)} views")
    photos, masks, uvs, cameras, crop_faces = [], [], [], [], []
    half = image_size // 2
    for i, view in enumerate(views):
        photo, mask, camera = stylepeople_crop(view, image_size, crop_scale)
        with torch.no_grad():
            uv = uv_input(body, view.vertices.reshape(1, -1, 3).float(), camera.scale(0.5))
        if not bool((uv > -10).any()):
            raise UserError(f"view {i + 1}: the fitted body is not visible in its photo; refit it")
        box = faces[i] if faces is not None else None
        photos.append(photo)
        masks.append(mask)
        uvs.append(uv.reshape(1, 2, half, half))
        cameras.append(camera)
        crop_faces.append(_face_in_crop(box, view.camera, camera) if box is not None else None)
    photo, mask = torch.cat(photos), torch.cat(masks)
    device = photo.device
    valid = torch.tensor([b is not None for b in crop_faces], dtype=torch.float32, device=device)
    grid = None
    if bool(valid.any()):
        dummy = FaceBox(image_size / 2, image_size / 2, image_size)
        grid = torch.stack([_face_grid(b or dummy, image_size, face_crop, device) for b in crop_faces])
    return SPTargets(photo * mask * 2 - 1, mask, torch.cat(uvs), cameras, crop_faces, grid, valid)


# ---------------------------------------------------------------------------------------- losses
def _perceptual(render: torch.Tensor, target: torch.Tensor, lpips: LPIPS | None) -> torch.Tensor:
    """Per-image perceptual distance (B,) of [-1, 1] images: LPIPS when given, else ``1 − SSIM``
    (compared in [0, 1]), our stand-in for it."""
    if lpips is not None:
        return lpips(render, target).flatten()
    from avatarcli.texture.metrics import ssim

    return 1 - ssim((render + 1) / 2, (target + 1) / 2)


def _photo_loss(
    render: torch.Tensor, targets: SPTargets, stage: SPStage, lpips: LPIPS | None = None
) -> torch.Tensor:
    """Weighted image terms, averaged over the views."""
    loss = stage.mse * F.mse_loss(render, targets.target)
    if stage.perceptual:
        loss = loss + stage.perceptual * _perceptual(render, targets.target, lpips).mean()
    if stage.face and targets.face_grid is not None:
        crops = F.grid_sample(render, targets.face_grid, mode="bilinear", align_corners=False)
        goal = F.grid_sample(targets.target, targets.face_grid, mode="bilinear", align_corners=False)
        loss = loss + stage.face * (_perceptual(crops, goal, lpips) * targets.face_valid).mean()
    return loss


# ----------------------------------------------------------------------------------- the fitting
def _synthesis_parameters(generator: SPTextureGenerator) -> list[torch.nn.Parameter]:
    """The weights stage 2 moves: conv1, convs, to_rgb1, to_rgbs (not the mapping, input or spectra)."""
    params = []
    for module in (generator.conv1, generator.convs, generator.to_rgb1, generator.to_rgbs):
        params.extend(p for name, p in module.named_parameters() if not name.endswith("add_input"))
    return params


def initial_latent(
    generator: SPTextureGenerator,
    targets: SPTargets,
    encoder: LatentEncoder | None,
    mean_latent_samples: int,
) -> tuple[torch.Tensor, str]:
    """The starting W+ (1, n_latent, style_dim) and how it was made ("encoder" | "mean_latent").

    The encoder gets every target resized to its ``input_size`` (default 512) and its latents
    are averaged over the photos.
    """
    n_latent, style_dim = generator.config.n_latent, generator.config.style_dim
    with torch.no_grad():
        if encoder is not None:
            side = int(getattr(encoder, "input_size", ENCODER_INPUT_SIZE))
            image = F.interpolate(targets.target, size=(side, side), mode="bilinear", align_corners=False)
            wplus = encoder(image)
            if tuple(wplus.shape[1:]) != (n_latent, style_dim):
                raise ValueError(
                    f"the encoder gave {tuple(wplus.shape)}, expected (B, {n_latent}, {style_dim})"
                )
            return wplus.mean(dim=0, keepdim=True).float(), "encoder"
        mean = generator.mean_latent(n_samples=mean_latent_samples)
        return mean[:, None, :].expand(1, n_latent, style_dim).clone().float(), "mean_latent"


def fit_stylepeople(
    views: Sequence[TextureView],
    body,
    generator: SPTextureGenerator,
    renderer: SPRenderer,
    *,
    options: SPFitOptions | None = None,
    encoder: LatentEncoder | None = None,
    faces: Sequence[FaceBox | None] | None = None,
    seed: int = 0,
    progress: FitProgress | None = None,
    lpips: LPIPS | None = None,
) -> SPFitResult:
    """Fit a StylePeople neural texture to one or several fitted photos (module docstring).

    ``views`` come from :func:`avatarcli.pipelines.create.posed_view` (photo, mask, posed body,
    camera), all on the device of the networks. ``faces`` gives per view the face window in
    photo pixels (:func:`face_box_of`), or ``None``. The networks passed in are not modified (the
    generator is copied before its weights are tuned; the renderer's gradient flags are restored).
    ``seed`` fixes the noise maps; with the same inputs a seed gives the same texture. ``lpips``
    (frozen, on the networks' device; :func:`avatarcli.pipelines.perceptual.load_lpips_if_installed`)
    makes the image and face terms LPIPS, as upstream; without it they are ``1 − SSIM``.
    """
    flags = [p.requires_grad for p in renderer.parameters()]
    try:
        return _fit(views, body, generator, renderer, options, encoder, faces, seed, progress, lpips)
    finally:
        for p, flag in zip(renderer.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _fit(views, body, generator, renderer, options, encoder, faces, seed, progress, lpips) -> SPFitResult:
    options = options or SPFitOptions()
    if not views:
        raise UserError("no photos to fit")
    report = progress or (lambda *_: None)
    t_start = time.perf_counter()
    notes = [] if lpips is not None else [LPIPS_NOTE]
    generator = copy.deepcopy(generator).eval().requires_grad_(False)
    renderer = renderer.eval().requires_grad_(False)
    device = generator.input.input.device

    targets = prepare_targets(
        views,
        body,
        options.image_size,
        faces=faces if options.use_face else None,
        crop_scale=options.crop_scale,
    )
    if options.use_face and not bool(targets.face_valid.all()):
        missing = int((targets.face_valid == 0).sum())
        notes.append(f"{missing} of {len(views)} photos have no usable face landmarks: no face term for them")
    latent0, init = initial_latent(generator, targets, encoder, options.mean_latent_samples)
    if init == "mean_latent":
        notes.append(MEAN_LATENT_NOTE)
    cpu = torch.Generator().manual_seed(int(seed))
    noise = [m.to(device) for m in generator.make_noise(1, generator=cpu, device="cpu", dtype=torch.float32)]
    snapshot = [p.detach().clone() for p in _synthesis_parameters(generator)]
    generator_numel = sum(p.numel() for p in generator.parameters())
    with torch.no_grad():
        texture0 = generator.synthesize(latent0, noise)
    latent = latent0.clone()
    texture = texture0.clone()
    batch = len(views)
    timings = {"init": time.perf_counter() - t_start}
    losses: dict[str, list[float]] = {}
    stopped: dict[str, bool] = {}
    out_of_time = False

    for stage in options.stages:
        t_stage = time.perf_counter()
        losses[stage.name] = []
        stopped[stage.name] = False
        if out_of_time or stage.iters == 0:
            stopped[stage.name] = out_of_time
            continue
        latent = latent.detach().requires_grad_(stage.name == "latent")
        noise = [m.detach().requires_grad_(stage.name == "noise") for m in noise]
        tuned = _synthesis_parameters(generator)
        for p in tuned:
            p.requires_grad_(stage.name == "generator")
        if stage.name == "texture":  # from now on the texture itself is the variable
            with torch.no_grad():
                texture = generator.synthesize(latent, noise)
            texture = texture.detach().requires_grad_(True)
        variables = {"latent": [latent], "generator": tuned, "noise": noise, "texture": [texture]}[stage.name]
        optimiser = torch.optim.Adam(variables, lr=stage.lr)
        best, since_best = math.inf, 0
        for step in range(stage.iters):
            optimiser.zero_grad(set_to_none=True)
            current = texture if stage.name == "texture" else generator.synthesize(latent, noise)
            render = renderer.render_texture(current.expand(batch, -1, -1, -1), targets.uv).rgb
            loss = _photo_loss(render, targets, stage, lpips)
            if stage.latent_deviation:
                loss = loss + stage.latent_deviation * (latent - latent0).abs().mean()
            if stage.generator_deviation:
                moved = sum((p - p0).abs().sum() for p, p0 in zip(tuned, snapshot, strict=True))
                loss = loss + stage.generator_deviation * moved / generator_numel
            if stage.texture_deviation:
                loss = loss + stage.texture_deviation * (current - texture0).abs().mean()
            loss.backward()
            optimiser.step()
            value = float(loss.detach())
            losses[stage.name].append(value)
            report(stage.name, step + 1, stage.iters, value)
            if value < best - options.min_delta:
                best, since_best = value, 0
            else:
                since_best += 1
            if options.patience is not None and since_best >= options.patience:
                stopped[stage.name] = True
                break
            if options.max_seconds is not None and time.perf_counter() - t_start > options.max_seconds:
                stopped[stage.name] = out_of_time = True
                break
        for p in tuned:
            p.requires_grad_(False)
        timings[stage.name] = time.perf_counter() - t_stage

    if out_of_time:
        notes.append(f"stopped after {options.max_seconds:g} s (--max-seconds): later steps skipped")
    with torch.no_grad():
        ran_texture_stage = bool(losses.get("texture"))
        final = texture if ran_texture_stage else generator.synthesize(latent, noise)
    return SPFitResult(
        texture=final.detach()[0].float(),
        latent=latent.detach(),
        initial_texture=texture0[0].float(),
        init=init,
        losses=losses,
        timings=timings,
        stopped_early=stopped,
        notes=notes,
        perceptual="lpips_vgg" if lpips is not None else "ssim",
    )


# ------------------------------------------------------------------------------- avatar create
def create_stylepeople_avatar(
    views: Sequence[TextureView],
    body,
    shape: torch.Tensor,
    records: list[dict],
    provenance: dict,
    *,
    seed: int = 0,
    options: SPFitOptions | None = None,
    device: torch.device | str = "cpu",
    faces: Sequence[FaceBox | None] | None = None,
    progress: FitProgress | None = None,
    weights_folder: Path | None = None,
) -> tuple[Avatar, list[tuple[float, float]], SPFitResult]:
    """``avatar create --method stylepeople``: fitted photos → a StylePeople avatar.

    Checks the ``stylepeople_generator`` / ``stylepeople_renderer`` weights before any work
    (:class:`~avatarcli.errors.MissingWeightsError` naming the file), loads the optional
    ``stylepeople_encoder`` when the manifest lists it (a listed but damaged file is an error,
    not a silent fallback), fits the neural texture (:func:`fit_stylepeople`) and builds the
    avatar: ``textures["neural"]`` (16, T, T) float16, ``weights`` = the sha256 of both
    networks, the input ``views`` records and ``provenance`` (plus the fit's settings and
    summary, and the encoder's sha256 when one was used). LPIPS is used when ``lpips_vgg`` is
    installed (the summary's ``perceptual`` says which term ran). Returns the avatar, the per-photo
    (PSNR, SSIM) of the StylePeople render against the photo inside its person mask (both in
    the StylePeople crop), and the fit result, whose ``notes`` the caller should show as warnings.
    """
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.sp_checkpoint import load_encoder, load_generator, load_renderer
    from avatarcli.pipelines.neural_render import manifest_sha256
    from avatarcli.pipelines.perceptual import load_lpips_if_installed
    from avatarcli.pipelines.sp_render import GENERATOR_WEIGHTS, RENDERER_WEIGHTS, SPFrameRenderer
    from avatarcli.weights_registry import read_manifest, require_weights

    has_encoder = any(e.name == ENCODER_WEIGHTS for e in read_manifest(weights_folder))
    names = [GENERATOR_WEIGHTS, RENDERER_WEIGHTS] + ([ENCODER_WEIGHTS] if has_encoder else [])
    paths = require_weights(names, weights_folder)
    options = options or SPFitOptions()
    device = torch.device(device)
    generator = load_generator(paths[GENERATOR_WEIGHTS], device)
    renderer = load_renderer(paths[RENDERER_WEIGHTS], device)
    encoder = load_encoder(paths[ENCODER_WEIGHTS], device) if has_encoder else None
    lpips = load_lpips_if_installed(device, weights_folder)
    views = [_view_to(v, device) for v in views]
    fit = fit_stylepeople(
        views,
        body,
        generator,
        renderer,
        options=options,
        encoder=encoder,
        faces=faces,
        seed=seed,
        progress=progress,
        lpips=lpips,
    )
    shas = {
        name: manifest_sha256(name, weights_folder) or "" for name in (GENERATOR_WEIGHTS, RENDERER_WEIGHTS)
    }
    summary = {"options": options.as_dict(), **fit.summary()}
    if encoder is not None:
        summary["encoder_sha256"] = manifest_sha256(ENCODER_WEIGHTS, weights_folder) or ""
    record = {**provenance, "method": "stylepeople", "seed": int(seed), "stylepeople": summary}
    avatar = Avatar(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=shape.detach().float().cpu().reshape(-1),
        uv_layout=body.name,
        textures={"neural": fit.texture.detach().cpu().half()},
        views=list(records),
        weights=shas,
        provenance=record,
    )
    draw = SPFrameRenderer(body, fit.texture[None].to(device), renderer.eval(), (0.0, 0.0, 0.0))
    scores = [_crop_scores(draw, view, options) for view in views]
    return avatar, scores, fit


def _view_to(view: TextureView, device: torch.device) -> TextureView:
    from avatarcli.texture.build import TextureView

    return TextureView(
        view.vertices.to(device), view.camera.to(device), view.image.to(device), view.mask.to(device)
    )


def _crop_scores(draw, view: TextureView, options: SPFitOptions) -> tuple[float, float]:
    """PSNR/SSIM of the StylePeople render vs the photo inside the person mask, in the crop."""
    from avatarcli.texture import psnr, ssim

    photo, mask, camera = stylepeople_crop(view, options.image_size, options.crop_scale)
    with torch.no_grad():
        frame = draw.render(view.vertices.reshape(1, -1, 3), camera)
        region = mask[:, 0] > 0.5
        if not bool(region.any()):
            return float("nan"), float("nan")
        image = torch.where(region[:, None], frame.to(photo), photo)
        return float(psnr(image, photo, region)), float(ssim(image, photo, region))


def stylepeople_preview_tiles(
    avatar: Avatar,
    body,
    view: TextureView,
    options: SPFitOptions | None = None,
    device: torch.device | str = "cpu",
) -> list[tuple[str, torch.Tensor]]:
    """Preview tiles of a StylePeople avatar: the crop, its neural re-render, texture, rest turns.

    Drawn through the installed renderer named in ``avatar.weights`` (as ``avatar animate`` will).
    """
    from avatarcli.pipelines.sample import _texture_preview
    from avatarcli.pipelines.sp_render import SPFrameRenderer
    from avatarcli.render import framing_camera

    options = options or SPFitOptions()
    device = torch.device(device)
    view = _view_to(view, device)
    draw = SPFrameRenderer.for_avatar(avatar, body, device, (1.0, 1.0, 1.0))
    photo, _, camera = stylepeople_crop(view, options.image_size, options.crop_scale)
    with torch.no_grad():
        frame = draw.render(view.vertices.reshape(1, -1, 3), camera)
        rest = body(shape=avatar.shape.to(device)[None]).vertices
        turns = draw.render(
            rest.expand(3, -1, -1), framing_camera(rest, [0.0, 90.0, 180.0], size=256).to(device)
        )
    tiles = [
        ("StylePeople crop", photo[0].cpu()),
        ("neural render, input view", frame[0].cpu()),
        ("neural texture (ch 0-2)", _texture_preview(avatar.textures["neural"].float())),
    ]
    tiles += [
        (f"{name} (rest)", img.cpu()) for name, img in zip(("front", "side", "back"), turns, strict=True)
    ]
    return tiles
