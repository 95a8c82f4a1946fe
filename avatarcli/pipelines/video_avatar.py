"""``avatar create --video`` / ``avatar merge --neural``: a neural avatar from a clip or many frames.

StylePeople §3.2 (and D²G-Net's setting) without pretrained weights:

1. frames: decode the video (or take the images), subsample (``every`` / ``max_frames``);
2. perceive every frame; frames without a (whole) person are skipped and reported;
3. fit the body to all frames with **one shared shape** (in chunks for long clips); the frames
   of one video also with a temporal term (smooth pose, orientation and translation over time);
4. RGB texture from the frames with the photo path (:func:`avatarcli.texture.build.build_rgb_texture`);
   it is stored as the RGB fallback, and its per-texel visibility tells which body regions the
   clip never showed. Each rendered frame starts from a base colour (:class:`FrameColour`) that
   the renderer corrects: with ``view_colour`` (default from 2 frames) the frames' photos are
   kept too (:mod:`avatarcli.texture.view_dependent`) and the base is the body drawn from the
   nearest frames' photos; without it the base is the merged texture;
5. jointly optimise the neural texture and a small from-scratch renderer
   (:mod:`avatarcli.nets.video_renderer`) against the frames: L1 + SSIM + Dice mask
   (+ LPIPS when installed). A training frame's view colour leaves its own photo out, so the
   renderer learns to correct what a new view gets, not to copy its photo;
6. avatar file: ``textures["neural"]`` (C, T, T) float16, ``textures["rgb"]``, the kept frames
   ``textures["view_*"]``, ``renderer`` = ``{"kind": "video_unet", "config", "state_dict",
   "colour_base"}``;
   :func:`frame_renderer_for` draws it; ``<output>_preview.png`` shows what it draws.

Resumable: the fitted frames and the optimisation state are checkpointed to
``<output>.train.pt`` (every ``checkpoint_every`` steps and on Ctrl-C); rerunning the same
command with the same inputs continues from there. The checkpoint is removed once the avatar
is written unless ``keep_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatarcli._version import __version__
from avatarcli.avatar_file import rgb_for_file
from avatarcli.errors import UserError

#: ``Avatar.renderer["kind"]`` of avatars made here
RENDERER_KIND = "video_unet"
CHECKPOINT_FORMAT = "avatarcli-video-train"
#: a body region counts as "never seen" below this share of its texels sampled from the frames
UNSEEN_SHARE = 0.05

ProgressFn = Callable[[str, int, int], None]


@dataclass
class VideoAvatarOptions:
    """Everything that changes the avatar (recorded in its provenance)."""

    body: str = "anny"
    smplx_dir: str | None = None
    every: int = 1
    max_frames: int = 60
    masks: list[str] | None = None  # one person mask per input frame (frames input only)
    #: image frames: read a mask / OpenPose JSON kept beside a frame (``x_mask.png``, …)
    sidecars: bool = True
    resolution: int = 512  # frames larger than this (longest side) are downscaled for training
    fit_iters: int = 150
    fit_chunk: int = 0  # fit this many frames per chunk (0: all together)
    pose_coupling: float = 1.0  # pull per-frame body poses together (1 for turnarounds, 0 for free motion)
    #: frames of one video (in time order): penalise the acceleration of pose, orientation and
    #: translation between neighbouring frames. Not used for image lists, which need not be in
    #: order. Weight chosen by leave-one-out on the training frames only (even iPER frames, each
    #: drawn from its neighbours' view-dependent colour): 1 / 3 / 10 / 30 / 100 → LOO PSNR
    #: 19.84 / 20.07 / 20.17 / 20.07 / 19.83 dB. With 10 instead of 1 the held-out odd frames
    #: gain too: view-dependent RGB 21.12 → 21.45 dB, SSIM 0.636 → 0.655, IoU 0.908 → 0.910.
    #: With the photometric refinement after it (``photometric_steps``) a smoother fit is better:
    #: on its validation split 1 / 3 / 10 / 30 / 100 → 20.93 / 21.18 / 21.37 / 21.38 / 21.25 dB,
    #: SSIM 0.626 / 0.637 / 0.644 / 0.649 / 0.649, person on black 19.83 / 20.17 / 20.17 / 20.32 /
    #: 20.24 (without it 10 stays best there: 21.05 against 21.01 for 30). Held-out odd frames
    #: (only reported), 10 → 30: view colour 22.78 → 22.83 dB, SSIM 0.715 → 0.718.
    temporal_smoothness: float = 30.0
    #: fit clothing offsets to the frames' masks (the body's outline follows loose clothes, hair).
    #: Full eval_video_avatar, plain → clothed, whole person on black (PSNR): iPER RGB 18.0 → 19.5,
    #: neural 18.0 → 19.5; octopus RGB 24.2 → 24.7, neural 24.3 → 24.6; silhouette IoU 0.82–0.87 →
    #: 0.91. Inside (mask ∩ body) the covered region grows into the hard outline: −0.2 to −0.9 dB.
    clothing: bool = True
    #: frames of one video: steps of the photometric pose refinement (each frame's pose moved so its
    #: photo agrees with its neighbours', :mod:`avatarcli.fitting.photometric`; 0 = off). Not for
    #: image lists: views far apart (octopus, 45°) disagree in colour and it made them worse.
    #: iPER, odd frames held out (their poses borrow their neighbours' corrections): view colour
    #: 22.57 → 22.78 dB, SSIM 0.705 → 0.715, person on black 20.38 → 20.87
    photometric_steps: int = 50
    #: frames of one video: rounds of posing every frame again on the trained avatar's own drawing
    #: of it (without its own photo, :func:`refine_frames_by_drawing`), each followed by training
    #: a new avatar on the re-posed frames — the fits' last pixel of disagreement with the photos
    #: found by analysis by synthesis, as test poses are (docs/ARCHITECTURE.md). 0 = train once.
    pose_rounds: int = 2
    texture_size: int = 256
    texture_channels: int = 8
    renderer_width: int = 24
    renderer_depth: int = 3
    pose_channels: str = "none"  # "none" | "normals" (D²G-Net-style pose conditioning)
    #: "on": the renderer corrects a view-dependent colour (the body drawn from the nearest
    #: frames' photos, :mod:`avatarcli.texture.view_dependent`) instead of one merged texture; "off";
    #: "auto": on from ``DEFAULT_MIN_VIEWS`` frames (measured there)
    view_colour: str = "auto"
    #: RGB-texture refinement before neural training; None = :meth:`refine_steps_for`
    refine_steps: int | None = None
    texture_views: int = 12  # frames (evenly spread) merged into the RGB texture; refining it costs per view
    fill: str = "mirror+back+harmonic"
    #: neural training steps. 1200 measured (composited as animate draws it): on the clean split of
    #: the iPER training frames (train on 14 even frames, score the 13 between) whole frame on black
    #: 25.29 / 0.918 → 25.72 / 0.919, IoU 0.938 → 0.943, inside the person unchanged; iPER held out
    #: (test-time poses against the avatar's drawing) 26.01 / 0.927 → 26.20 / 0.928; octopus folds
    #: 0 and 4 30.11 / 0.940 → 30.08 / 0.939 — three times the CPU time for the outline alone.
    steps: int = 400
    batch: int = 2
    patch: int = 128
    #: a slow neural texture stays close to the RGB texture that held-out views agree with:
    #: 2e-3 → 5e-4 took held-out neural PSNR/SSIM on full iPER 19.58/0.570 → 19.68/0.580 and on
    #: quick octopus folds 0, 4 24.59/0.828 → 24.89/0.849 (RGB avatar: 19.74/0.582, 24.85/0.856)
    lr_texture: float = 5e-4
    lr_renderer: float = 1e-3
    ssim_weight: float = 0.5
    dice_weight: float = 0.5
    #: per-pixel cross-entropy of the renderer's alpha against the person mask, beside the Dice:
    #: Dice alone drew a halo round the person. Chosen on a clean split of the iPER training frames
    #: (train on 14 even frames, score the 13 between them), weight 0 / 1 / 3 (and 1 without the
    #: Dice): IoU 0.931 / 0.938 / 0.937 (0.933), whole frame on black 25.15 / 25.40 / 25.37
    #: (25.28) dB, person on black 21.02 / 21.28 / 21.26 (21.15), inside the person 22.24 dB in all.
    #: The octopus's 8 photos (hard masks, 45° apart; leave-one-out) lose a little: person on black
    #: 24.88 → 24.77 dB, IoU 0.909 → 0.901 (docs/ARCHITECTURE.md).
    bce_weight: float = 1.0
    #: how strongly the renderer is held to its base colour (:class:`FrameColour`) inside the body
    #: (L1 on its change). Chosen on a clean split of the iPER training frames (train on 13 even frames, score
    #: the 14 between them; the colour alone 21.14 dB / 0.641): 0 / 0.3 / 1 / 3 / 10 / 30 → 20.93 /
    #: 21.06 / 21.12 / 21.12 / 21.14 / 21.14 dB, SSIM 0.624 / 0.628 / 0.631 / 0.638 / 0.641 / 0.641;
    #: the whole person on black (its outline is the renderer's alone) 20.05 / 20.15 / 20.16 / 20.17
    #: / 20.22 / 20.23. 400 CPU steps find no change to the photos' colour that holds for new views.
    correction_weight: float = 10.0
    checkpoint_every: int = 50
    keep_checkpoint: bool = False
    seed: int = 0
    overwrite: bool = False

    def check(self) -> None:
        from avatarcli.nets.video_renderer import POSE_CHANNELS

        if self.pose_channels not in POSE_CHANNELS:
            raise UserError(f"--pose-channels must be one of {', '.join(POSE_CHANNELS)}")
        if self.texture_size not in (128, 256, 512, 1024):
            raise UserError(f"--texture-size must be 128, 256, 512 or 1024, not {self.texture_size}")
        if self.texture_channels < 3:
            raise UserError("--texture-channels must be ≥ 3")
        if self.steps < 0 or self.fit_iters < 1 or self.batch < 1 or self.patch < 16:
            raise UserError("--steps ≥ 0, --fit-iters ≥ 1, --batch ≥ 1 and --patch ≥ 16 please")
        if self.every < 1 or self.max_frames < 1 or self.resolution < 32 or self.texture_views < 1:
            raise UserError("--every, --max-frames and --texture-views must be ≥ 1, --resolution ≥ 32")
        if self.view_colour not in ("auto", "on", "off"):
            raise UserError(f"view colour must be auto, on or off, not {self.view_colour!r}")
        if not (self.correction_weight >= 0 and math.isfinite(self.correction_weight)):
            raise UserError(f"the correction weight must be ≥ 0, not {self.correction_weight}")
        if not (self.bce_weight >= 0 and math.isfinite(self.bce_weight)):
            raise UserError(f"the alpha cross-entropy weight must be ≥ 0, not {self.bce_weight}")
        if not (self.temporal_smoothness >= 0 and math.isfinite(self.temporal_smoothness)):
            raise UserError(f"--temporal-smoothness must be ≥ 0, not {self.temporal_smoothness}")
        if self.pose_rounds < 0:
            raise UserError(f"--pose-rounds must be ≥ 0, not {self.pose_rounds}")
        if self.photometric_steps < 0:
            raise UserError(f"--photometric-steps must be ≥ 0, not {self.photometric_steps}")
        if self.refine_steps is not None and self.refine_steps < 0:
            raise UserError(f"--refine-steps must be ≥ 0, not {self.refine_steps}")

    def train_settings(self):
        from avatarcli.pipelines.video_training import TrainSettings

        return TrainSettings(
            steps=self.steps,
            batch=self.batch,
            patch=self.patch,
            lr_texture=self.lr_texture,
            lr_renderer=self.lr_renderer,
            ssim_weight=self.ssim_weight,
            dice_weight=self.dice_weight,
            bce_weight=self.bce_weight,
            correction_weight=self.correction_weight,
            checkpoint_every=self.checkpoint_every,
        )

    def uses_view_colour(self, frames: int) -> bool:
        """Whether an avatar from ``frames`` frames gets view-dependent colour."""
        from avatarcli.texture.view_dependent import DEFAULT_MIN_VIEWS

        if self.view_colour == "auto":
            return frames >= DEFAULT_MIN_VIEWS
        return self.view_colour == "on" and frames >= 2

    def refine_steps_for(self, frames: int) -> int:
        """RGB refinement steps for the merged texture of ``frames`` frames: as told, else 32, or
        none with view colour — the kept photos draw the frames and the texture only fills what
        none saw (sparse views of iPER's training frames: ≤ 0.02 dB either way; iPER video: 43 s
        saved)."""
        if self.refine_steps is not None:
            return self.refine_steps
        return 0 if self.uses_view_colour(frames) else 32

    def renderer_config(self, base_colour: bool = True):
        """``base_colour``: the renderer corrects a colour each frame supplies (the kept photos'
        or the merged texture's, :class:`FrameColour`); False is the older form, the merged
        texture in the neural texture's first channels, which avatar files may still hold."""
        from avatarcli.nets.video_renderer import VideoRendererConfig

        return VideoRendererConfig(
            texture_channels=self.texture_channels,
            pose_channels=self.pose_channels,
            width=self.renderer_width,
            depth=self.renderer_depth,
            view_colour=base_colour,
        )

    def identity(self) -> dict:
        """The options a checkpoint must agree on to be continued (not the step budget)."""
        # sidecars: the checkpoint key hashes the sidecar files read instead
        skip = {"steps", "checkpoint_every", "keep_checkpoint", "overwrite", "smplx_dir", "sidecars"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class VideoAvatarResult:
    avatar: Path
    preview: Path
    frames_used: list[str]
    frames_skipped: list[dict]  # {"frame", "reason"}
    psnr: float  # mean over the used frames, person mask ∩ body render
    ssim: float
    mask_iou: float
    loss_first: float | None
    loss_last: float | None
    steps: int
    resumed_from_step: int | None
    unseen_regions: list[str]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    #: view-colour avatars: each frame drawn with the colour of the *other* frames (its own photo
    #: left out), what to expect from an angle it was not given; None without view colour
    new_view_psnr: float | None = None
    new_view_ssim: float | None = None
    #: how many used frames read their keypoints / mask from a file (given, or kept beside them)
    perception_files: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["avatar"], d["preview"] = str(self.avatar), str(self.preview)
        return d


# --------------------------------------------------------------------------------- fitted frames
@dataclass
class FittedFrames:
    """Frames at the working resolution with the fitted body: the training set of the avatar."""

    names: list[str]
    shape: torch.Tensor  # (1, S) shared
    poses: torch.Tensor  # (N, 55, 3)
    transl: torch.Tensor  # (N, 3)
    cameras: list  # avatarcli.render.Camera per frame, at the working resolution
    photos: list[torch.Tensor]  # (1, 3, H, W) [0, 1]
    masks: list[torch.Tensor]  # (1, H, W) [0, 1] person masks
    source_sizes: list[tuple[int, int]]  # (width, height) of the original frames
    quality: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def vertices(self, body, index: int) -> torch.Tensor:
        with torch.no_grad():
            out = body(
                shape=self.shape, pose=self.poses[index : index + 1], transl=self.transl[index : index + 1]
            )
        return out.vertices.detach()

    def to_record(self) -> dict:
        cams = [
            {"K": c.K[0], "R": c.R[0], "t": c.t[0], "width": c.width, "height": c.height}
            for c in self.cameras
        ]
        return {
            "names": list(self.names),
            "shape": self.shape,
            "poses": self.poses,
            "transl": self.transl,
            "cameras": cams,
            "photos": [(p[0] * 255).round().to(torch.uint8) for p in self.photos],
            "masks": [(m[0] * 255).round().to(torch.uint8) for m in self.masks],
            "source_sizes": [list(s) for s in self.source_sizes],
            "quality": json.loads(json.dumps(self.quality, default=_json_default)),
        }

    @classmethod
    def from_record(cls, data: dict) -> FittedFrames:
        from avatarcli.render import Camera

        cams = [Camera(c["K"], c["R"], c["t"], int(c["width"]), int(c["height"])) for c in data["cameras"]]
        return cls(
            names=list(data["names"]),
            shape=data["shape"],
            poses=data["poses"],
            transl=data["transl"],
            cameras=cams,
            photos=[p.float()[None] / 255.0 for p in data["photos"]],
            masks=[m.float()[None] / 255.0 for m in data["masks"]],
            source_sizes=[tuple(s) for s in data["source_sizes"]],
            quality=list(data.get("quality") or []),
        )


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, H, W) → (1, C, h, w) with antialiasing (downscaling only is expected)."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def fitted_frames_from_fits(perceptions, fits, resolution: int) -> FittedFrames:
    """Scale photos, masks and cameras of fitted perceptions to the working ``resolution``."""
    photos, masks, cameras, sizes = [], [], [], []
    for p, fit in zip(perceptions, fits, strict=True):
        width, height = p.width, p.height
        factor = min(1.0, resolution / max(width, height))
        size = (round(height * factor), round(width * factor))
        photo = torch.from_numpy(np.array(p.image, copy=True)).permute(2, 0, 1)[None].float() / 255.0
        mask = torch.from_numpy(np.asarray(p.mask, np.float32))[None, None]
        photos.append(_resize(photo, size).clamp(0, 1))
        masks.append(_resize(mask, size).clamp(0, 1)[:, 0])
        camera = fit.camera()
        cameras.append(camera.scale(factor) if factor != 1.0 else camera)
        sizes.append((width, height))
    shape = torch.as_tensor(np.asarray(fits[0].shape, np.float32))[None]
    return FittedFrames(
        names=[Path(p.image_path).name for p in perceptions],
        shape=shape,
        poses=torch.stack([torch.as_tensor(np.asarray(f.pose, np.float32)) for f in fits]),
        transl=torch.stack([torch.as_tensor(np.asarray(f.transl, np.float32)) for f in fits]),
        cameras=cameras,
        photos=photos,
        masks=masks,
        source_sizes=sizes,
        quality=[f.quality for f in fits],
    )


def fit_frames(
    perceptions, body, opts: VideoAvatarOptions, say: ProgressFn, times: Sequence[float] | None = None
) -> list:
    """Fit all frames with one shared shape; long clips in chunks whose shapes are averaged.

    Fitting all frames in one batch shares the shape exactly but costs time linear in the clip
    and memory with it; chunks bound the memory. Averaging the chunks' shapes (all fitted with
    the same priors) moves each frame's fit slightly off its optimum; the renderer absorbs
    small misalignments. ``times`` (the source frame index of each perception, increasing)
    says the frames are one video in time order and turns on the temporal term.
    """
    from avatarcli.fitting import FitSettings, fit_perceptions

    settings = FitSettings(
        iters=opts.fit_iters,
        seed=opts.seed,
        pose_coupling=opts.pose_coupling,
        temporal_smoothness=opts.temporal_smoothness if times is not None else 0.0,
    )
    chunk = opts.fit_chunk if opts.fit_chunk > 0 else len(perceptions)
    starts = range(0, len(perceptions), chunk)
    groups = [perceptions[i : i + chunk] for i in starts]
    fits = []
    for k, (start, group) in enumerate(zip(starts, groups, strict=True)):
        if settings.temporal_smoothness > 0:
            settings.frame_times = tuple(float(t) for t in times[start : start + len(group)])
        fits.extend(
            fit_perceptions(
                group,
                body,
                settings=settings,
                progress=lambda s, d, t, k=k: say(f"fit {k + 1}/{len(groups)}: {s}", d, t),
            )
        )
    if len(groups) > 1:
        mean_shape = np.mean([np.asarray(f.shape, np.float32) for f in fits], axis=0)
        for f in fits:
            f.shape = mean_shape.copy()
    return fits


def small_person_note(perceptions) -> str | None:
    """One warning for the frames where the person is too small for a sharp texture (a clip of
    someone far away would otherwise warn once per frame)."""
    from avatarcli.perception.perceive import MIN_SHARP_HEIGHT_PX, person_height_px

    heights = [person_height_px(p) for p in perceptions]
    small = sorted(h for h in heights if 0 < h < MIN_SHARP_HEIGHT_PX)
    if not small:
        return None
    return (
        f"the person is under {MIN_SHARP_HEIGHT_PX} px tall in {len(small)} of {len(heights)} frames "
        f"(median {small[len(small) // 2]:.0f} px); the avatar's texture will be soft"
    )


def perceive_frames(
    paths: Sequence[Path], masks: Sequence[str | None], say: ProgressFn, sidecars: bool = True
):
    """Perceive every frame; frames without a whole person are skipped with their reason."""
    from avatarcli.perception import perceive

    kept, skipped = [], []
    for i, (path, mask) in enumerate(zip(paths, masks, strict=True)):
        say("perception", i, len(paths))
        try:
            kept.append(perceive(path, mask=mask, sidecars=sidecars))
        except UserError as exc:
            skipped.append({"frame": Path(path).name, "reason": str(exc)})
    say("perception", len(paths), len(paths))
    return kept, skipped


# ------------------------------------------------------------------------------ texture + model
def clothe_frames(body, frames: FittedFrames, seed: int = 0, say: ProgressFn | None = None, indices=None):
    """The body wearing clothing offsets fitted to the chosen frames' masks (all by default), and
    the provenance report."""
    from avatarcli.fitting.clothing import ClothingSettings, clothe_body

    report = say or (lambda *_: None)
    chosen = list(range(len(frames))) if indices is None else list(indices)
    return clothe_body(
        body,
        frames.shape,
        frames.poses[chosen],
        frames.transl[chosen],
        [frames.cameras[i] for i in chosen],
        [frames.masks[i].reshape(frames.masks[i].shape[-2:]) for i in chosen],
        ClothingSettings(seed=seed),
        lambda done, total: report("clothing", done, total),
    )


def _photometric_settings(steps: int, side: int | None):
    """The pose refinement's settings: ``steps``, and ``side`` unless None (its default then)."""
    from avatarcli.fitting.photometric import PhotometricSettings

    return PhotometricSettings(steps=steps) if side is None else PhotometricSettings(steps=steps, side=side)


def refine_frames(
    body,
    frames: FittedFrames,
    times: Sequence[float],
    steps: int,
    say: ProgressFn | None = None,
    indices: Sequence[int] | None = None,
    borrowers: Sequence[int] = (),
    against: Sequence[int] | None = None,
    side: int | None = None,
) -> tuple[FittedFrames, dict]:
    """``frames`` of one video (``times`` per frame) with their poses refined photometrically
    against their neighbours in time (:mod:`avatarcli.fitting.photometric`), and the provenance
    report. ``indices`` (all by default) are refined, each against its nearest frames of
    ``against`` (by default the refined frames themselves; others stay where they are); each of
    ``borrowers`` — frames whose photos may not be used — takes the correction of the refined
    frames before and after it in time, interpolated linearly. ``side``: the longer side, in
    pixels, at which frames are compared (None: the refinement's default)."""
    from avatarcli.fitting.photometric import borrow_corrections, refine_poses, time_neighbours

    report = say or (lambda *_: None)
    chosen = list(range(len(frames))) if indices is None else list(indices)
    d_pose, d_transl, record = refine_poses(
        body,
        frames.shape,
        frames.poses,
        frames.transl,
        frames.cameras,
        frames.photos,
        frames.masks,
        time_neighbours(times, chosen if against is None else list(against), chosen),
        _photometric_settings(steps, side),
        lambda done, total: report("pose refinement", done, total),
    )
    d_pose, d_transl = borrow_corrections(d_pose, d_transl, times, time_neighbours(times, chosen, borrowers))
    refined = replace(
        frames,
        poses=frames.poses + d_pose.to(frames.poses),
        transl=frames.transl + d_transl.to(frames.transl),
    )
    return refined, record


def refine_frames_by_drawing(
    body,
    frames: FittedFrames,
    indices: Sequence[int],
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    say: ProgressFn | None = None,
    times: Sequence[float] | None = None,
    borrowers: Sequence[int] = (),
    side: int | None = None,
) -> tuple[FittedFrames, dict]:
    """``frames`` with each of ``indices`` posed again against the avatar's own drawing of it —
    analysis by synthesis: ``draw(i)`` (rgb, alpha) stands in as a neighbour seen from the frame's
    camera with the body where it was drawn, and
    :func:`~avatarcli.fitting.photometric.refine_poses` moves the frame's body until its photo's
    pixels read the same colours off the drawing, its outline held on the photo's mask (the pose
    refinement's own settings but ``side``). A drawing must not come from the frame's own photo, or it agrees
    with any pose. Each of ``borrowers`` (frames whose photos may not be used; needs ``times``)
    takes the corrections of its neighbours in time, as :func:`refine_frames` lends them.
    ``side`` as for :func:`refine_frames`."""
    from avatarcli.fitting.photometric import borrow_corrections, refine_poses, time_neighbours

    report = say or (lambda *_: None)
    chosen, n = list(indices), len(frames)
    with torch.no_grad():
        drawn = [draw(i) for i in chosen]
    cover = [(alpha > 0.5).to(rgb.dtype) for rgb, alpha in drawn]
    d_pose, d_transl, record = refine_poses(
        body,
        frames.shape,
        torch.cat([frames.poses, frames.poses[chosen]]),
        torch.cat([frames.transl, frames.transl[chosen]]),
        [*frames.cameras, *(frames.cameras[i] for i in chosen)],
        [*frames.photos, *(rgb.clamp(0, 1) * c for (rgb, _), c in zip(drawn, cover, strict=True))],
        [*frames.masks, *(c[:, 0] for c in cover)],
        {i: [n + k] for k, i in enumerate(chosen)},
        _photometric_settings(steps, side),
        lambda done, total: report("posing on the avatar", done, total),
    )
    d_pose, d_transl = d_pose[:n], d_transl[:n]
    if borrowers:
        if times is None:
            raise ValueError("borrowed corrections need the frames' times")
        lenders = time_neighbours(times, chosen, borrowers)
        d_pose, d_transl = borrow_corrections(d_pose, d_transl, times, lenders)
    refined = replace(
        frames,
        poses=frames.poses + d_pose.to(frames.poses),
        transl=frames.transl + d_transl.to(frames.transl),
    )
    return refined, record


def rgb_texture_for_frames(
    body, frames: FittedFrames, indices: Sequence[int], opts: VideoAvatarOptions, say=None
):
    """The photo-path texture (:class:`~avatarcli.texture.build.RGBTexture`) of the chosen frames."""
    from avatarcli.pipelines.progress import StepBars
    from avatarcli.texture import body_texel_maps
    from avatarcli.texture.build import TextureView, build_rgb_texture

    step = StepBars(say, "texture: ")
    size = opts.texture_size if opts.texture_size in (256, 512, 1024) else 256
    views = [
        TextureView(frames.vertices(body, i), frames.cameras[i], frames.photos[i], frames.masks[i] > 0.5)
        for i in indices
    ]
    built = build_rgb_texture(
        body, views, texture_size=size, fill_method=opts.fill,
        refine_steps=opts.refine_steps_for(len(indices)), maps=body_texel_maps(body, size, frames.shape),
        progress=step,
    )  # fmt: skip
    step.finish()
    return built


def initial_neural_texture(
    rgb: torch.Tensor, channels: int, size: int, base_colour: bool = False
) -> torch.Tensor:
    """(1, C, T, T): colour in the first three channels, zeros in the rest (the renderer learns them).

    With ``base_colour`` the first three channels start at zero too: they are a correction added
    to the colour each frame supplies (:class:`FrameColour`).
    """
    if base_colour:
        return torch.zeros(1, channels, size, size)
    colour = rgb[None].float()
    if colour.shape[-1] != size:
        colour = F.interpolate(colour, size=(size, size), mode="bilinear", align_corners=True)
    extra = torch.zeros(1, channels - 3, size, size)
    return torch.cat([colour, extra], 1)


@dataclass
class FrameColour:
    """The colour of the body in any frame that the neural renderer corrects (its base colour):
    drawn from the kept photos (view-dependent), or, with ``colour`` None, the merged texture.

    ``frame_view`` maps a training frame to its own kept photo, so a training frame can be given
    the colour its neighbours alone predict (``exclude_frame``) — what a new frame gets — rather
    than its own photo, which the renderer would learn to trust.
    """

    colour: object | None  # avatarcli.texture.view_dependent.ViewColour, or None: merged only
    merged: torch.Tensor  # (1, 3, T, T) where none of the nearest frames saw a pixel
    frame_view: dict[int, int] = field(default_factory=dict)

    @property
    def views(self):
        """The kept photos (:class:`~avatarcli.texture.view_dependent.ViewPhotos`) or None."""
        return self.colour.views if self.colour is not None else None

    def __call__(
        self, vertices: torch.Tensor, camera, inputs, exclude_frame: int | None = None
    ) -> torch.Tensor:
        """(1, 3, H, W) colour of the body at ``inputs``' pixels (a :class:`FrameInputs` of this
        mesh and camera: its rasterisation is reused, nothing is rasterised again)."""
        from avatarcli.render import sample_texture

        merged = sample_texture(self.merged, inputs.uv, inputs.mask[:, 0])
        if self.colour is None:
            return merged
        without = self.frame_view.get(exclude_frame) if exclude_frame is not None else None
        colour, weight = self.colour.colour(vertices, camera, inputs.fragments, without=without)
        return torch.where(weight > 1e-6, colour, merged)


def frame_colour_for_frames(
    body, frames: FittedFrames, indices: Sequence[int], merged: torch.Tensor, refined: bool = False
) -> FrameColour:
    """Keep the photos of ``indices`` (up to :data:`~avatarcli.texture.view_dependent.MAX_VIEWS`);
    ``refined``: their poses were refined photometrically, so they are blurred less
    (:data:`~avatarcli.texture.view_dependent.REFINED_BLUR_SHARE`)."""
    from avatarcli.texture.build import TextureView
    from avatarcli.texture.view_dependent import (
        REFINED_BLUR_SHARE,
        ViewColour,
        build_view_photos,
        kept_views,
        torso_vertex_ids,
    )

    chosen = [indices[k] for k in kept_views(len(indices))]
    device = frames.shape.device
    with torch.no_grad():
        rest = body.rest(frames.shape).vertices[0]
    views = [
        TextureView(frames.vertices(body, i), frames.cameras[i], frames.photos[i], frames.masks[i] > 0.5)
        for i in chosen
    ]
    kept = build_view_photos(body, views, REFINED_BLUR_SHARE if refined else None).to(device)
    colour = ViewColour(kept, body.faces, rest, torso_vertex_ids(body))
    return FrameColour(colour, merged.to(device), {int(i): k for k, i in enumerate(chosen)})


def unseen_regions(body, frames: FittedFrames, indices: Sequence[int], size: int = 128) -> list[str]:
    """Body regions (part, front/back) of which under 5 % of the surface was visible in any frame.

    Uses per-texel visibility (in frame, facing the camera, not occluded), which unlike the
    sampled-texel mask does not depend on the frames' resolution.
    """
    from avatarcli.body.parts import PART_NAMES
    from avatarcli.render import rasterize, rasterize_uv, texel_geometry, texel_visibility

    device = frames.shape.device
    uv_frags = rasterize_uv(body.uv.to(device), body.uv_faces.to(device), size)
    with torch.no_grad():
        rest = texel_geometry(
            body.rest(frames.shape).vertices, body.faces, body.uv, body.uv_faces, size, uv_fragments=uv_frags
        )
        seen = torch.zeros(size, size, dtype=torch.bool, device=device)
        for i in indices:
            verts = frames.vertices(body, i)
            geo = texel_geometry(verts, body.faces, body.uv, body.uv_faces, size, uv_fragments=uv_frags)
            fragments = rasterize(verts, body.faces, frames.cameras[i], cull_backfaces=True)
            seen |= texel_visibility(geo, frames.cameras[i], fragments)[0]
    layout = rest.mask
    parts = body.part_ids.to(device)[rest.face_index.clamp_min(0)]
    front = rest.normal[0, ..., 2] > 0
    regions = []
    for pid, name in enumerate(PART_NAMES):
        for side, selector in (("front", front), ("back", ~front)):
            texels = (parts == pid) & layout & selector
            count = int(texels.sum())
            if count >= 10 and float((seen & texels).sum()) / count < UNSEEN_SHARE:
                regions.append(f"{name.replace('_', ' ')} ({side})")
    return regions


def frame_targets(
    body,
    frames: FittedFrames,
    indices: Sequence[int],
    normals: bool,
    margin: int = 8,
    minimum: int = 64,
    colour: FrameColour | None = None,
):
    """Rasterise each chosen frame once, cropped to the person (body render ∪ person mask).

    With a view-dependent ``colour`` every frame is a target twice: with the colour its neighbours
    alone give it, and with the colour that includes its own photo. A new view between frames
    gets something in between (the neighbours-only colour comes from twice the frames' spacing),
    so the renderer learns a correction for the range new views fall in. Trained on the first
    only, it over-corrected: iPER, trained on 13 even frames, scored on the 14 between them,
    21.01 dB / 0.619 for the colour alone → 20.67 / 0.576 trained on neighbours-only colour,
    20.94 / 0.604 on both; all 27 even → 25 odd frames: 22.17 / 0.667 → 22.24 / 0.671. With the
    merged texture as the colour (no kept photos) each frame is a target once.
    """
    from avatarcli.pipelines.video_training import FrameTarget, person_window, rasterize_frame

    targets, with_own = [], []
    for i in indices:
        cam = frames.cameras[i]
        verts = frames.vertices(body, i)
        full = rasterize_frame(body, verts, cam, normals=False)
        window = person_window([full.mask[0, 0], frames.masks[i][0]], cam.width, cam.height, margin, minimum)
        inputs = rasterize_frame(body, verts, cam, normals=normals, window=window)
        left, top, w, h = window
        photo = frames.photos[i][..., top : top + h, left : left + w]
        person = frames.masks[i][:, None, top : top + h, left : left + w]
        if colour is not None and colour.views is None:  # the merged texture: one colour per frame
            inputs.colour = colour(verts, cam, inputs)
        elif colour is not None:
            own = replace(inputs, colour=colour(verts, cam, inputs))  # shares all but the colour
            with_own.append(FrameTarget(own, photo, person))
            inputs.colour = colour(verts, cam, inputs, exclude_frame=i)
        targets.append(FrameTarget(inputs, photo, person))
    return targets + with_own


# ------------------------------------------------------------------------------------- scoring
def score_render(rgb, alpha, coverage, photo, person) -> dict[str, float]:
    """Scores of one rendered frame against its photo.

    ``psnr``/``ssim``: inside (person mask ∩ body render) with the photo outside — the same
    region as :func:`avatarcli.pipelines.create.input_view_scores`, so RGB and neural avatars are
    judged on the same kind of pixels; it ignores what the avatar fails to cover. ``iou``: the
    avatar's silhouette (alpha > 0.5) against the mask. ``psnr_person``/``ssim_person``: the
    whole person on black (the avatar times its alpha against the photo times the mask) over
    their joint bounding box, as neural-avatar papers score, so a missing jacket costs too.
    ``psnr_frame``/``ssim_frame``: the same on black over the whole frame, as papers that score
    full frames do (the background counts as right, so they read higher: iPER 24.8 / 0.92 where
    the person's box gives 20.9 / 0.78).
    """
    from avatarcli.texture import psnr, ssim

    region = coverage.bool() & (person > 0.5)
    image = torch.where(region, rgb.clamp(0, 1), photo)
    pred_mask, true_mask = alpha > 0.5, person > 0.5
    union = float((pred_mask | true_mask).sum())
    iou = float((pred_mask & true_mask).sum()) / union if union else float("nan")
    on_black, truth = rgb.clamp(0, 1) * alpha, photo * true_mask
    scores = {
        "iou": iou,
        **_person_on_black(on_black, truth, pred_mask | true_mask),
        "psnr_frame": float(psnr(on_black, truth)),
        "ssim_frame": float(ssim(on_black, truth)),
    }
    if not bool(region.any()):
        return {"psnr": float("nan"), "ssim": float("nan"), **scores}
    return {"psnr": float(psnr(image, photo, region)), "ssim": float(ssim(image, photo, region)), **scores}


def _person_on_black(pred: torch.Tensor, truth: torch.Tensor, either: torch.Tensor) -> dict[str, float]:
    from avatarcli.texture import psnr, ssim

    rows, cols = torch.nonzero(either[0, 0], as_tuple=True)
    if rows.numel() == 0:
        return {"psnr_person": float("nan"), "ssim_person": float("nan")}
    box = (..., slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
    a, b = pred[box], truth[box]
    return {"psnr_person": float(psnr(a, b)), "ssim_person": float(ssim(a, b))}


def draw_view(
    model, body, vertices: torch.Tensor, camera, colour: FrameColour | None = None, exclude_frame=None
):
    """The posed body (``vertices``, batch 1) drawn in full by the neural avatar from ``camera``:
    RGB (not clamped), alpha (raw: compositing mattes it), and the body's rasterisation
    (:class:`FrameInputs`; its ``mask`` is the body's coverage). ``colour``: the base colour the
    renderer corrects; ``exclude_frame``: drawn without that frame's kept photo."""
    from avatarcli.pipelines.video_training import rasterize_frame

    with torch.no_grad():
        inputs = rasterize_frame(body, vertices, camera, normals=model.wants_normals)
        if colour is not None:
            inputs.colour = colour(vertices, camera, inputs, exclude_frame)
        rgb, alpha = model(inputs)
    return rgb, alpha, inputs


def draw_frame(
    model, body, frames: FittedFrames, i: int, colour: FrameColour | None = None, exclude_frame=None
):
    """Fitted frame ``i`` drawn by the neural avatar (:func:`draw_view` in its pose and camera)."""
    return draw_view(model, body, frames.vertices(body, i), frames.cameras[i], colour, exclude_frame)


def score_frames(
    model,
    body,
    frames: FittedFrames,
    indices: Sequence[int],
    colour: FrameColour | None = None,
    leave_own_out: bool = False,
) -> list[dict[str, float]]:
    """Render each chosen frame in full with the neural avatar and score it against the photo;
    ``leave_own_out``: each frame's view colour without its own photo (as training sees it).

    The avatar is composited as ``avatar animate`` draws it (its alpha through
    :func:`~avatarcli.pipelines.video_training.matte`): the renderer's faint haze off the body,
    where no training patch reached, never shows in a user's frame, so it is not scored either."""
    from avatarcli.pipelines.video_training import matte

    scores = []
    for i in indices:
        rgb, alpha, inputs = draw_frame(model, body, frames, i, colour, i if leave_own_out else None)
        person = frames.masks[i][:, None]
        scores.append(score_render(rgb, matte(alpha), inputs.mask, frames.photos[i], person))
    return scores


# ---------------------------------------------------------------------------------- checkpoints
def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.stem + ".train.pt")


def _sidecar_files(frame_list, masks: Sequence[str | None], enabled: bool) -> list[tuple[str, Path]]:
    """("mask" | "keypoints", file) for each sidecar perception will read for these frames (a
    checkpoint must know of them: a mask added beside the frames later changes the avatar)."""
    if not enabled or frame_list.source != "frames":
        return []
    from avatarcli.perception.sidecars import find_sidecars

    files = []
    for path, mask in zip(frame_list.paths, masks, strict=True):
        found = find_sidecars(path)
        if found.mask is not None and mask is None:
            files.append(("mask", found.mask))
        if found.keypoints is not None:
            files.append(("keypoints", found.keypoints))
    return files


def _checkpoint_key(frame_hashes: Sequence[str], opts: VideoAvatarOptions, perceptual: str = "ssim") -> str:
    identity = {"frames": list(frame_hashes), "options": opts.identity()}
    if perceptual != "ssim":  # keys of runs without LPIPS stay as they were
        identity["perceptual"] = perceptual
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_checkpoint(path: Path, payload: dict) -> None:
    from avatarcli.io_utils import atomic_write

    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, key: str, warnings: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint (killed mid-write cannot happen: atomic) is ignored
        warnings.append(f"{path.name}: unreadable training checkpoint, starting over")
        return None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        warnings.append(f"{path.name} is not a video-avatar checkpoint; starting over")
        return None
    if data.get("key") != key:
        warnings.append(f"{path.name} was made from other frames or options; starting over")
        return None
    return data


# ------------------------------------------------------------------------------------ the job
def create_video_avatar(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    opts: VideoAvatarOptions | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> VideoAvatarResult:
    """A video path or a list of frame paths → a neural avatar file (see the module docstring)."""
    from avatarcli.body import load_body
    from avatarcli.io_utils import sha256_file
    from avatarcli.pipelines.video_frames import collect_frames
    from avatarcli.pipelines.video_training import NeuralAvatarModel, TrainState, train_steps

    opts = opts or VideoAvatarOptions()
    opts.check()
    target = Path(output)
    if target.suffix.lower() != ".pt":
        target = target / f"{Path(inputs if isinstance(inputs, (str, os.PathLike)) else inputs[0]).stem}.pt"
    if target.exists() and not opts.overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    say = progress or (lambda *_: None)
    torch.manual_seed(opts.seed)
    from avatarcli.pipelines.perceptual import load_lpips_if_installed, perceptual_name

    lpips = load_lpips_if_installed(device)  # before any work: a damaged install stops here
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    body = load_body(opts.body, model_dir=opts.smplx_dir)
    ckpt_file = checkpoint_path(target)

    with tempfile.TemporaryDirectory(prefix="avatar-frames-") as tmp:
        frame_list = collect_frames(inputs, Path(tmp), every=opts.every, max_frames=opts.max_frames)
        if opts.masks is not None:
            if frame_list.source != "frames":
                raise UserError("--mask files go with image frames, not with a video")
            count = frame_list.total
            if len(opts.masks) != count:
                raise UserError(f"{len(opts.masks)} masks for {count} frames; give one mask per frame")
            masks = [opts.masks[i] for i in frame_list.source_index]
        else:
            masks = [None] * len(frame_list.paths)
        frame_hashes = {p.name: sha256_file(p) for p in frame_list.paths}
        hashes = list(frame_hashes.values()) + [sha256_file(m) for m in masks if m]
        sidecars = _sidecar_files(frame_list, masks, opts.sidecars)
        hashes += [sha256_file(f) for _, f in sidecars]
        perception_files = {
            "masks": sum(m is not None for m in masks) + sum(kind == "mask" for kind, _ in sidecars),
            "keypoints": sum(kind == "keypoints" for kind, _ in sidecars),
        }
        key = _checkpoint_key(hashes, opts, perceptual_name(lpips))
        ckpt = _load_checkpoint(ckpt_file, key, warnings)

        clothing_report = photometric_report = None
        if ckpt is not None:
            frames = FittedFrames.from_record(ckpt["frames"])
            skipped = list(ckpt["skipped"])
            rgb_texture, known = ckpt["rgb_texture"].float() / 255.0, ckpt["known"].bool()
            if ckpt.get("clothing_offsets") is not None:
                from avatarcli.body.clothed import ClothedBody

                body = ClothedBody(body, ckpt["clothing_offsets"])
                clothing_report = ckpt.get("clothing_report")
            photometric_report = ckpt.get("photometric_report")
        else:
            t0 = time.perf_counter()
            perceptions, skipped = perceive_frames(frame_list.paths, masks, say, opts.sidecars)
            timings["perception"] = time.perf_counter() - t0
            if not perceptions:
                raise UserError(
                    f"no frame of {frame_list.source} shows a whole person "
                    f"({len(skipped)} tried; first: {skipped[0]['reason'] if skipped else 'none'})"
                )
            t0 = time.perf_counter()
            times = None
            if frame_list.source != "frames":  # one video: frames in time order
                source_index = dict(
                    zip((p.name for p in frame_list.paths), frame_list.source_index, strict=True)
                )
                times = [source_index[Path(p.image_path).name] for p in perceptions]
            fits = fit_frames(perceptions, body, opts, say, times=times)
            frames = fitted_frames_from_fits(perceptions, fits, opts.resolution)
            for f in fits:
                warnings.extend(f.warnings)
            if note := small_person_note(perceptions):
                warnings.append(note)
            timings["fitting"] = time.perf_counter() - t0
            if opts.clothing:
                t0 = time.perf_counter()
                body, clothing_report = clothe_frames(body, frames, opts.seed, say)
                timings["clothing"] = time.perf_counter() - t0
            if times is not None and opts.photometric_steps > 0 and len(frames) > 1:
                t0 = time.perf_counter()
                frames, photometric_report = refine_frames(body, frames, times, opts.photometric_steps, say)
                timings["pose_refinement"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            from avatarcli.pipelines.video_frames import subsample

            views = subsample(len(frames), 1, max(1, opts.texture_views))
            built = rgb_texture_for_frames(body, frames, views, opts, say)
            rgb_texture, known = built.texture.cpu(), built.seen.cpu()
            timings["rgb_texture"] = time.perf_counter() - t0
    if len(skipped) > len(frames):
        warnings.append(
            f"{len(skipped)} of {len(skipped) + len(frames)} frames show no whole person; skipped them"
        )
    regions = unseen_regions(body, frames, range(len(frames)))
    if regions:
        warnings.append("never seen in the frames (guessed): " + ", ".join(regions))

    base = {
        "format": CHECKPOINT_FORMAT,
        "key": key,
        "frames": frames.to_record(),
        "skipped": skipped,
        "rgb_texture": (rgb_texture * 255).round().to(torch.uint8),
        "known": known.to(torch.uint8),
        "clothing_offsets": getattr(body, "offsets", None),
        "clothing_report": clothing_report,
        "photometric_report": photometric_report,
    }
    if ckpt is None:
        _save_checkpoint(ckpt_file, base)  # fitting is the slow part: never redo it

    # ---- joint optimisation of neural texture + renderer, in rounds: after each but the last,
    # every frame is posed again on the avatar's drawing of it and a new avatar is trained
    t0 = time.perf_counter()
    view_colour = opts.uses_view_colour(len(frames))
    config = opts.renderer_config()
    one_video = frame_list.source != "frames"
    rounds = opts.pose_rounds if one_video and len(frames) > 1 and opts.photometric_steps > 0 else 0
    first_round = int(ckpt.get("round", 0)) if ckpt is not None else 0
    repose_reports = list(ckpt.get("repose_reports", [])) if ckpt is not None else []
    body_on_device = body.to(device)

    def fresh_model(round_: int) -> NeuralAvatarModel:
        torch.manual_seed(opts.seed + round_)  # the same start whether or not the run resumed
        texture = initial_neural_texture(
            rgb_texture, config.texture_channels, opts.texture_size, base_colour=True
        )
        return NeuralAvatarModel(texture, config).to(device)

    model = fresh_model(first_round)
    state = None
    resumed_from = None
    if ckpt is not None and "model" in ckpt:
        model.load_state_dict(ckpt["model"])
        state = TrainState(int(ckpt["step"]), ckpt["optimizer"], ckpt["rng"], list(ckpt["history"]))
        resumed_from = state.step
    for round_ in range(first_round, rounds + 1):
        on_device, every = _frames_to(frames, device), range(len(frames))  # copied to the device once
        colour = FrameColour(None, rgb_texture[None].to(device))
        if view_colour:
            say("kept photos", 0, 1)
            colour = frame_colour_for_frames(
                body_on_device, on_device, every, rgb_texture[None].to(device),
                refined=photometric_report is not None,
            )  # fmt: skip
            say("kept photos", 1, 1)
        targets = frame_targets(body_on_device, on_device, every, model.wants_normals, colour=colour)
        base.update(round=round_, repose_reports=repose_reports)  # a resumed run's checkpoints keep them

        def save_state(s: TrainState, model: NeuralAvatarModel = model) -> None:
            model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            _save_checkpoint(
                ckpt_file,
                {
                    **base,
                    "model": model_state,
                    "optimizer": _to_cpu(s.optimizer),
                    "rng": s.rng,
                    "step": s.step,
                    "history": s.history,
                },
            )

        stage = "train" if rounds == 0 else f"train (round {round_ + 1} of {rounds + 1})"
        state = train_steps(
            model,
            targets,
            opts.train_settings(),
            state=state,
            on_checkpoint=save_state,
            progress=lambda _, done, total, stage=stage: say(stage, done, total),
            seed=opts.seed + round_,
            lpips=lpips,
        )
        if round_ == rounds:
            break
        model.eval()
        own_out = partial(draw_frame_without_own_photo, model, body_on_device, on_device, colour)
        reposed, record = refine_frames_by_drawing(
            body_on_device, on_device, every, own_out, opts.photometric_steps, say
        )
        frames = replace(frames, poses=reposed.poses.cpu(), transl=reposed.transl.cpu())
        repose_reports.append(record)
        base.update(frames=frames.to_record(), round=round_ + 1)
        _save_checkpoint(ckpt_file, base)  # the re-posed frames: a rerun starts the next round
        model, state = fresh_model(round_ + 1), None
    timings["training"] = time.perf_counter() - t0

    # ---- scores, avatar file
    t0 = time.perf_counter()
    say("score", 0, 1)
    scores = score_frames(model, body, on_device, every, colour)
    new_views = []
    if colour.views is not None:  # each frame without its own photo: what a new angle gets
        new_views = score_frames(model, body, on_device, every, colour, leave_own_out=True)
    say("score", 1, 1)
    avatar = _avatar(
        body, frames, model, rgb_texture, known, opts, frame_hashes, frame_list, state,
        perceptual_name(lpips), clothing_report, colour, photometric_report, repose_reports,
    )  # fmt: skip
    from avatarcli.avatar_file import save_avatar

    save_avatar(avatar, target, overwrite=opts.overwrite)
    if not opts.keep_checkpoint:
        ckpt_file.unlink(missing_ok=True)
    else:
        save_state(state)
    timings["save"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("preview", 0, 1)
    preview = write_preview(target.with_name(target.stem + "_preview.png"), avatar, body, on_device, device)
    say("preview", 1, 1)
    timings["preview"] = time.perf_counter() - t0
    history = state.history
    return VideoAvatarResult(
        avatar=target,
        preview=preview,
        frames_used=list(frames.names),
        perception_files=perception_files,
        frames_skipped=skipped,
        psnr=_mean(scores, "psnr", 2),
        ssim=_mean(scores, "ssim", 4),
        mask_iou=_mean(scores, "iou", 4),
        loss_first=round(history[0]["loss"], 4) if history else None,
        loss_last=round(history[-1]["loss"], 4) if history else None,
        steps=state.step,
        resumed_from_step=resumed_from,
        unseen_regions=regions,
        warnings=warnings,
        seconds=round(time.perf_counter() - t_start, 2),
        timings={k: round(v, 2) for k, v in timings.items()},
        new_view_psnr=_mean(new_views, "psnr", 2),
        new_view_ssim=_mean(new_views, "ssim", 4),
    )


def write_preview(path: Path, avatar, body, frames: FittedFrames, device: torch.device) -> Path:
    """The first frame, the avatar's redraw of it, its colour texture, and front / side / back in
    the rest pose — all drawn by the avatar's own renderer, as ``avatar animate`` will."""
    from avatarcli.pipelines.posing import avatar_rgb_texture
    from avatarcli.render import framing_camera
    from avatarcli.render.preview import VIEW_YAWS, save_contact_sheet

    body = body.to(device)
    draw = frame_renderer_for(avatar, body, device, (1.0, 1.0, 1.0))
    with torch.no_grad():
        redrawn = draw(frames.vertices(body, 0), frames.cameras[0])[0]
        rest = body(shape=frames.shape).vertices
        turns = draw(
            rest.expand(len(VIEW_YAWS), -1, -1), framing_camera(rest[0], list(VIEW_YAWS.values()), 256)
        )
    tiles = [
        (f"frame {frames.names[0]}", frames.photos[0][0].cpu()),
        ("redrawn by the avatar", redrawn),
        ("colour texture", avatar_rgb_texture(avatar, torch.device("cpu"))[0]),
        *((f"{name} (rest)", image) for name, image in zip(VIEW_YAWS, turns, strict=True)),
    ]
    return save_contact_sheet(path, tiles, tile_size=256, columns=3)


def _mean(scores: list[dict[str, float]], key: str, digits: int) -> float | None:
    return round(float(np.nanmean([s[key] for s in scores])), digits) if scores else None


def draw_frame_without_own_photo(model, body, frames: FittedFrames, colour: FrameColour, i: int):
    """Frame ``i`` (rgb, alpha) drawn by the avatar from the other frames' photos."""
    rgb, alpha, _ = draw_frame(model, body, frames, i, colour, i)
    return rgb, alpha


def _frames_to(frames: FittedFrames, device: torch.device) -> FittedFrames:
    if device.type == "cpu":
        return frames
    return FittedFrames(
        frames.names,
        frames.shape.to(device),
        frames.poses.to(device),
        frames.transl.to(device),
        [c.to(device) for c in frames.cameras],
        [p.to(device) for p in frames.photos],
        [m.to(device) for m in frames.masks],
        frames.source_sizes,
        frames.quality,
    )


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _avatar(
    body, frames: FittedFrames, model, rgb_texture, known, opts, hashes, frame_list, state, perceptual,
    clothing_report=None, colour: FrameColour | None = None, photometric_report=None,
    repose_reports: Sequence[dict] = (),
):  # fmt: skip
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.video_renderer import renderer_record
    from avatarcli.texture.view_dependent import to_avatar_textures

    kept = colour.views if colour is not None else None  # the kept photos, if the base is theirs
    views = []
    for i, name in enumerate(frames.names):
        width, height = frames.source_sizes[i]
        factor = width / frames.cameras[i].width
        cam = frames.cameras[i].scale(factor)
        views.append(
            {
                "image_name": name,
                "pose": frames.poses[i].cpu(),
                "transl": frames.transl[i].cpu(),
                "K": cam.K[0].cpu(),
                "R": cam.R[0].cpu(),
                "t": cam.t[0].cpu(),
                "width": int(width),
                "height": int(height),
            }
        )
    rgb = rgb_for_file(rgb_texture)
    return Avatar(
        body_backend=body.name,
        body_model_id=body.model_id,
        shape=frames.shape[0].cpu(),
        uv_layout=body.name,
        textures={
            "rgb": rgb,
            "known": known.to(torch.uint8) * 255,
            "neural": model.texture.detach()[0].cpu().to(torch.float16),
            **(to_avatar_textures(kept) if kept is not None else {}),
        },
        views=views,
        renderer={
            **renderer_record(model.renderer.cpu(), RENDERER_KIND),
            "colour_base": "photos" if kept is not None else "merged",
        },
        provenance={
            "method": "video",
            "seed": opts.seed,
            "tool_version": __version__,
            "source": frame_list.source,
            "inputs": [{"name": n, "sha256": hashes.get(n, "")} for n in frames.names],
            "params": {k: v for k, v in asdict(opts).items() if k not in ("overwrite",)},
            "train_steps": state.step,
            "perceptual": perceptual,
            "fit_quality": json.loads(json.dumps(frames.quality, default=_json_default)),
            **({"clothing": clothing_report} if clothing_report is not None else {}),
            **({"pose_refinement": photometric_report} if photometric_report is not None else {}),
            **({"posed_on_avatar": list(repose_reports)} if repose_reports else {}),
        },
        clothing_offsets=body.offsets.cpu() if clothing_report is not None else None,
    )


# --------------------------------------------------------------------------------- animation
@dataclass
class VideoFrameRenderer:
    """Draws a video avatar: posed body → neural texture + renderer → frames over a background."""

    body: object
    model: object  # NeuralAvatarModel
    background: tuple[float, float, float] | torch.Tensor
    colour: FrameColour | None = None  # renderers with view_colour

    def __call__(self, vertices: torch.Tensor, camera) -> np.ndarray:
        from avatarcli.pipelines.video_training import matte
        from avatarcli.render import Camera

        batch = vertices.shape[0]
        camera = camera.expand(batch)
        frames = []
        for b in range(batch):  # one at a time bounds memory at any resolution
            cam = Camera(camera.K[b], camera.R[b], camera.t[b], camera.width, camera.height)
            rgb, alpha, _ = draw_view(self.model, self.body, vertices[b : b + 1], cam, self.colour)
            alpha = matte(alpha)
            bg = _background(self.background, b, rgb)
            frames.append(rgb.clamp(0, 1) * alpha + bg * (1 - alpha))
        image = torch.cat(frames, 0)
        return (image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _background(background, index: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(background, torch.Tensor) and background.dim() == 4:
        bg = background[min(index, background.shape[0] - 1) : min(index, background.shape[0] - 1) + 1]
        return bg.to(like)
    colour = torch.as_tensor(background, dtype=like.dtype, device=like.device).reshape(-1)
    if colour.numel() == 1:
        colour = colour.repeat(3)
    return colour.view(1, 3, 1, 1)


def is_video_avatar(avatar) -> bool:
    return isinstance(avatar.renderer, dict) and avatar.renderer.get("kind") == RENDERER_KIND


def model_from_avatar(avatar, device: torch.device | str = "cpu"):
    """Rebuild the trained texture + renderer pair from an avatar file's plain data."""
    from avatarcli.errors import AvatarFormatError
    from avatarcli.nets.video_renderer import VideoRendererConfig, renderer_from_record
    from avatarcli.pipelines.video_training import NeuralAvatarModel

    if not is_video_avatar(avatar):
        raise AvatarFormatError(
            "this avatar has no video-avatar renderer; recreate it with avatar create --video"
        )
    if "neural" not in avatar.textures:
        raise AvatarFormatError("the video avatar has no neural texture; the file is damaged")
    config = VideoRendererConfig.from_dict(dict(avatar.renderer["config"]))
    texture = avatar.textures["neural"].float()[None]
    model = NeuralAvatarModel(texture, config)
    try:
        model.renderer.load_state_dict(renderer_from_record(avatar.renderer).state_dict())
    except RuntimeError as exc:
        raise AvatarFormatError(f"the avatar's renderer weights do not match its config: {exc}") from exc
    return model.to(device).eval()


def frame_renderer_for(avatar, body, device: torch.device | str, background) -> VideoFrameRenderer:
    """The FrameRenderer for avatars whose ``renderer["kind"]`` is ``"video_unet"``.

    ``background``: a grey level, an RGB triple, or an image as (H, W, 3) numpy float in [0, 1]
    or a (1 or B, 3, H, W) tensor.
    """
    device = torch.device(device)
    if isinstance(background, np.ndarray):
        background = torch.from_numpy(background).permute(2, 0, 1)[None].float()
    if isinstance(background, torch.Tensor):
        background = background.to(device)
    model = model_from_avatar(avatar, device)
    colour = avatar_frame_colour(avatar, body.to(device), device) if model.wants_colour else None
    return VideoFrameRenderer(body.to(device), model, background, colour)


def avatar_frame_colour(avatar, body, device: torch.device) -> FrameColour:
    """The colour a video avatar's renderer corrects, from the avatar file: drawn from its kept
    photos (``renderer["colour_base"]`` "photos", what files without the key mean) or its merged
    texture ("merged")."""
    from avatarcli.errors import AvatarFormatError
    from avatarcli.pipelines.posing import avatar_rgb_texture, avatar_view_colour

    base = avatar.renderer.get("colour_base", "photos")
    if base not in ("photos", "merged"):
        raise AvatarFormatError(f"the video avatar's colour base {base!r} is unknown; the file is damaged")
    colour = avatar_view_colour(avatar, body, device) if base == "photos" else None
    if base == "photos" and colour is None:
        raise AvatarFormatError(
            "the video avatar's renderer needs its kept photos, which the file lacks; it is damaged"
        )
    return FrameColour(colour, avatar_rgb_texture(avatar, device))
