"""Evaluate neural video avatars (no pretrained weights) against the RGB-texture avatar.

    python benchmarks/eval_video_avatar.py [--quick] [--json] [--only iper|octopus] [--pose-compare]
                                           [--colour-compare] [--ceiling] [--test-time-poses]
                                           [--drawing-pose-side PX] [--drawing-pose-passes N]
                                           [--set OPTION=VALUE ...]

Cases (issue #8 items 4–5; target for the neural avatar: held-out PSNR ≥ 26 dB, SSIM ≥ 0.93,
and better than the RGB avatar). Avatars: ``rgb`` (one merged texture, ``avatar merge
--no-view-dependent``), ``rgb_view`` (the same plus view-dependent colour drawn from the training
frames' photos, ``avatar merge``'s default from 2 photos), ``neural`` (``avatar merge --neural``
with its defaults: the renderer corrects the view-dependent colour; ``--colour-compare`` adds
``neural_merged`` and ``neural_view``, the renderer correcting the merged texture / the view
colour whatever the frame count):

* iPER 360° turn GIF (512², 53 frames, no masks: the person masks are mediapipe's): train on
  the even frames, score the odd ones. ``--quick``: every 4th frame each (0, 4, … / 1, 5, …) at
  256 px.
* octopus 8 views with their segmentation masks, leave-one-out: train on 7, score the 8th.
  ``--quick``: folds 0 and 4 (front and back) at 256 px.

The merged texture is refined 32 steps, as ``--no-view-dependent`` makes it (the view-colour
avatars of ``avatar merge`` and ``create --video`` skip that refinement: ≤ 0.02 dB on what they
draw). Clothing offsets (on by default, as in ``avatar create --video``) are fitted to the training
frames' masks only, per split. iPER's frames, one video, also get the photometric pose
refinement of ``avatar create --video``: the training frames against their neighbours in time;
each held-out frame then takes the mean correction of its two training neighbours (its own colour
is never read; the octopus views, not a video, are not refined). Both avatars share one body
fit over all frames (held-out frames included: the pose of the frame to render is given, as in
novel-view evaluation; iPER's frames are fitted as one video, with the temporal term, octopus's
as unordered views). Scores:
PSNR/SSIM inside (person mask ∩ body render), the photo elsewhere (as ``avatar create``
reports), the IoU of the avatar's silhouette (body render for RGB, renderer alpha > 0.5 for
neural) with the person mask, and PSNR/SSIM of the whole person on black over the bounding box
(neural-avatar papers' way: uncovered clothing counts as an error too), and the same over the
whole frame (``frame``: papers that score full frames; the background counts as right). The
neural avatar is composited as ``avatar animate`` draws it (its alpha matted, so the renderer's
faint haze off the body, where no training patch reached, is not drawn).
``--ceiling`` (iPER) puts the scores in proportion: the held-out photos themselves moved by
0.5 / 1 / 2 px or the person blurred by σ 0.5 / 1 / 1.75 px (as the view colour blurs its
photos), scored inside the person against the unmoved photo (what a fit off by that much, or a
texture that soft, costs however right its colours), and each held-out frame predicted from its
nearest training frames on either side by optical-flow interpolation (image space, no avatar).
``--test-time-poses`` (iPER) also scores the view-colour and neural avatars (``*_ttp``) with
each held-out frame's pose refined photometrically against its two training neighbours, as the
training frames are refined against each other (the held-out photo is read for the pose only, as
its keypoints and mask already are): the test-time pose optimisation with which Anim-NeRF and
InstantAvatar score PeopleSnapshot; and (``*_ttpr``) each pose then refined further against the
avatar's own drawing of that frame, its outline on the frame's mask (analysis by synthesis, those
papers' way: the drawing is the avatar's, never fitted to the photo), compared at the frames' own
resolution and drawn and posed three times (``--drawing-pose-side``, ``--drawing-pose-passes``).
``--pose-compare`` also trains the renderer with camera-space normals as extra input;
``--set`` overrides any :class:`VideoAvatarOptions` field (``--set temporal_smoothness=0``
measures the fit without the temporal term; ``--set clothing=false`` the plain body).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GIF = DATA / "video" / "iper_023_1_1_turnaround.gif"
OCTO = DATA / "photos" / "octopus_multiview"
SCORES = ("psnr", "ssim", "iou", "psnr_person", "ssim_person", "psnr_frame", "ssim_frame")
#: what the truth itself scores when moved or blurred by this many pixels (``--ceiling``)
SHIFTS = (0.5, 1.0, 2.0)
BLURS = (0.5, 1.0, 1.75)
#: test-time poses against the avatar's drawing: compared at the frames' own resolution (the
#: scored one), drawn and posed three times. Chosen on the clean split (the training frames' even
#: half trains, the odd half is scored): the pose refinement's default 256 px, one pass, whole
#: frame on black 25.80 / 0.9220; 512 px once / twice / three times 25.98 / 0.9226, 26.07 /
#: 0.9233, 26.12 / 0.9235 (docs/ARCHITECTURE.md)
DRAWING_POSE_PASSES = 3


def _mean(rows: list[dict], key: str) -> float:
    """Five decimals: with four, a whole-frame SSIM of 0.92995 reads as issue #8's 0.93."""
    return round(float(np.nanmean([r[key] for r in rows])), 5) if rows else float("nan")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fit_all(paths, masks, body, opts, times=None):
    from avatarcli.pipelines.video_avatar import fit_frames, fitted_frames_from_fits, perceive_frames

    log(f"perceiving and fitting {len(paths)} frames")

    def say(stage: str, done: int, total: int) -> None:
        if done == total and stage != "perception":
            log(f"  {stage} done")

    perceptions, skipped = perceive_frames(paths, masks, say, sidecars=False)  # the masks given only
    t0 = time.perf_counter()
    if times is not None:  # frames of one video: their source indices turn on the temporal term
        by_name = {Path(p).name: t for p, t in zip(paths, times, strict=True)}
        times = [by_name[Path(p.image_path).name] for p in perceptions]
    fits = fit_frames(perceptions, body, opts, say, times=times)
    frames = fitted_frames_from_fits(perceptions, fits, opts.resolution)
    kept = [Path(p.image_path).name for p in perceptions]
    return frames, kept, skipped, time.perf_counter() - t0


def _moved(photo: torch.Tensor, dx: float) -> torch.Tensor:
    """``photo`` (1, 3, H, W) moved ``dx`` pixels sideways (bilinear, edges repeated)."""
    import torch.nn.functional as F

    width = photo.shape[-1]
    theta = torch.tensor([[[1.0, 0.0, 2.0 * dx / width], [0.0, 1.0, 0.0]]], dtype=photo.dtype)
    grid = F.affine_grid(theta, list(photo.shape), align_corners=False)
    return F.grid_sample(photo, grid, align_corners=False, padding_mode="border")


def _flow_between(before: torch.Tensor, after: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """The frame ``share`` of the way from photo ``before`` to photo ``after`` (1, 3, H, W) by
    optical flow: each read that far along its flow to the other (DIS, OpenCV), the two blended
    by nearness."""
    import cv2

    from avatarcli.texture.floating import grey_levels

    height, width = before.shape[-2:]
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def moved(source: torch.Tensor, other: torch.Tensor, part: float) -> np.ndarray:
        flow = dis.calc(grey_levels(source[0]), grey_levels(other[0]), None)  # source(x) ≈ other(x + flow(x))
        image = source[0].permute(1, 2, 0).numpy().astype(np.float32)
        return cv2.remap(
            image, cols - part * flow[..., 0], rows - part * flow[..., 1], cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip

    mid = (1.0 - share) * moved(before, after, share) + share * moved(after, before, 1.0 - share)
    return torch.from_numpy(mid).permute(2, 0, 1)[None].to(before.dtype)


def ceiling_scores(frames, train: list[int], test: list[int], times: list[int]) -> dict[str, dict]:
    """PSNR/SSIM inside the person (its mask) of each held-out photo against itself moved by
    :data:`SHIFTS` pixels or blurred by :data:`BLURS`, and of the optical-flow interpolation of
    its nearest training frames before and after it in time: how exact a prediction these scores
    demand."""
    from avatarcli.texture import psnr, ssim
    from avatarcli.texture.view_dependent import person_blur

    rows: dict[str, list[tuple[float, float]]] = {}

    def score(label: str, image: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> None:
        image = torch.where(region, image.clamp(0, 1), truth)
        rows.setdefault(label, []).append(
            (float(psnr(image, truth, region)), float(ssim(image, truth, region)))
        )

    for i in test:
        truth, region = frames.photos[i], frames.masks[i][:, None] > 0.5
        for dx in SHIFTS:
            score(f"truth moved {dx:g} px", _moved(truth, dx), truth, region)
        for sigma in BLURS:
            score(f"truth blurred σ {sigma:g} px", person_blur(truth, region.float(), sigma), truth, region)
        earlier = [k for k in train if times[k] < times[i]]
        later = [k for k in train if times[k] > times[i]]
        if earlier and later:  # the nearest training frame on each side in time
            before = max(earlier, key=lambda k: times[k])
            after = min(later, key=lambda k: times[k])
            share = (times[i] - times[before]) / (times[after] - times[before])
            between = _flow_between(frames.photos[before], frames.photos[after], share)
            score("flow between neighbours", between, truth, region)
    return {
        label: {"psnr": round(float(np.mean([v[0] for v in values])), 2),
                "ssim": round(float(np.mean([v[1] for v in values])), 4), "frames": len(values)}
        for label, values in rows.items()
    }  # fmt: skip


def rgb_scores(body, frames, built, indices) -> list[dict]:
    from avatarcli.pipelines.video_avatar import score_render
    from avatarcli.render import render_textured

    rows = []
    with torch.no_grad():
        for i in indices:
            img, cover = render_textured(
                frames.vertices(body, i),
                body.faces,
                body.uv,
                body.uv_faces,
                built.texture[None],
                frames.cameras[i],
            )
            rows.append(score_render(img, cover, cover, frames.photos[i], frames.masks[i][:, None]))
    return rows


def view_colour_drawing(body, frames, colour, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame ``i`` drawn by the RGB avatar with view-dependent colour (``avatar merge
    --view-dependent``): ``colour`` (a :class:`~avatarcli.pipelines.video_avatar.FrameColour` of
    the training frames) alone; its alpha is the body's coverage."""
    from avatarcli.pipelines.video_training import rasterize_frame

    with torch.no_grad():
        vertices = frames.vertices(body, i)
        inputs = rasterize_frame(body, vertices, frames.cameras[i], normals=False)
        return colour(vertices, frames.cameras[i], inputs), inputs.mask


def neural_drawing(model, body, frames, i: int, colour) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame ``i`` drawn by a trained neural avatar (``colour``: the base colour it corrects)."""
    from avatarcli.pipelines.video_avatar import draw_frame

    rgb, alpha, _ = draw_frame(model, body, frames, i, colour)
    return rgb.clamp(0, 1), alpha


def rgb_view_scores(body, frames, colour, indices) -> list[dict]:
    """Scores of the view-colour RGB avatar (:func:`view_colour_drawing`)."""
    from avatarcli.pipelines.video_avatar import score_render

    rows = []
    for i in indices:
        img, cover = view_colour_drawing(body, frames, colour, i)
        rows.append(score_render(img, cover, cover, frames.photos[i], frames.masks[i][:, None]))
    return rows


def neural_run(body, frames, built, colour, train, test, opts, times=None):
    """Train and score one neural avatar; ``colour`` is the training frames' view colour, the
    renderer's base when ``opts`` turn it on for this many frames (else the merged texture).
    With ``times`` (frames of one video) the training frames are posed again on each round's
    avatar (``opts.pose_rounds``, as the tool does) and the test frames borrow their neighbours'
    corrections. Returns the scores, the training seconds, the losses, the model, the colour it
    corrects and the frames as finally posed."""
    from avatarcli.pipelines.video_avatar import (
        FrameColour,
        draw_frame_without_own_photo,
        frame_colour_for_frames,
        frame_targets,
        initial_neural_texture,
        refine_frames_by_drawing,
        score_frames,
    )
    from avatarcli.pipelines.video_training import NeuralAvatarModel, full_frame_loss, train_steps

    config = opts.renderer_config()
    rounds = opts.pose_rounds if times is not None and opts.photometric_steps > 0 else 0
    seconds = 0.0
    for round_ in range(rounds + 1):
        torch.manual_seed(opts.seed + round_)
        model = NeuralAvatarModel(
            initial_neural_texture(
                built.texture, config.texture_channels, opts.texture_size, base_colour=True
            ),
            config,
        )
        if not opts.uses_view_colour(len(train)):  # the merged texture is the colour it corrects
            colour = FrameColour(None, built.texture[None])
        targets = frame_targets(body, frames, train, model.wants_normals, colour=colour)
        settings = opts.train_settings()
        before = full_frame_loss(model, targets, settings)
        t0 = time.perf_counter()
        train_steps(model, targets, settings, seed=opts.seed + round_)
        if round_ < rounds:
            own_out = partial(draw_frame_without_own_photo, model, body, frames, colour)
            frames, _ = refine_frames_by_drawing(
                body, frames, train, own_out, opts.photometric_steps, times=times, borrowers=test
            )
            colour = frame_colour_for_frames(body, frames, train, built.texture[None], refined=True)
        seconds += time.perf_counter() - t0
    after = full_frame_loss(model, targets, settings)
    return (
        score_frames(model, body, frames, test, colour),
        seconds,
        {"train_loss_before": round(before, 4), "train_loss_after": round(after, 4)},
        model,
        colour,
        frames,
    )


def test_time_poses(body, frames, times, train, test, steps):
    """``frames`` with each test frame's pose refined against its training neighbours in time, as
    the training frames were refined against each other (the training frames stay where they
    are): test-time pose optimisation, the protocol of Anim-NeRF and InstantAvatar on
    PeopleSnapshot. The test photo is read for the pose only; the avatar never sees it."""
    from avatarcli.pipelines.video_avatar import refine_frames

    return refine_frames(body, frames, times, steps, indices=test, against=train)


def test_time_poses_by_render(body, frames, test, draw, steps: int, side: int | None = None, passes: int = 1):
    """``frames`` with each test frame's pose refined further against the frozen avatar's own
    drawing of it — analysis by synthesis, as Anim-NeRF and InstantAvatar refine test poses
    (:func:`~avatarcli.pipelines.video_avatar.refine_frames_by_drawing`, which the tool runs on
    its training frames between rounds). ``draw(frames, i)`` → rgb, alpha. The avatar never sees
    the photo. ``side``: pixels of the longer side at which they are compared (None: the
    refinement's default); each of ``passes`` draws the frames again where the last one posed
    them (the drawing a pass compares with was made at the pose it started from)."""
    from avatarcli.pipelines.video_avatar import refine_frames_by_drawing

    records = []
    for _ in range(passes):
        frames, record = refine_frames_by_drawing(body, frames, test, partial(draw, frames), steps, side=side)
        records.append(record)
    # the last pass's record (its corrections are its own), its first loss the first pass's
    return frames, {**records[-1], "passes": passes, "loss_first": records[0]["loss_first"]}


def evaluate_split(
    name, body, frames, train, test, opts, variants, times=None, test_time=False, drawing_poses=None
) -> dict:
    """``times`` (one per frame) when the frames are one video: their poses are then refined
    photometrically, the training frames against each other, and each test frame borrows the
    correction of its training neighbours in time (its own photo is never read). ``test_time``:
    also score the view colour and the neural avatars with the test frames' poses refined
    photometrically against their training neighbours (:func:`test_time_poses`), as ``*_ttp``,
    then against each avatar's drawing (``*_ttpr``; ``drawing_poses``: the side and the passes of
    :func:`test_time_poses_by_render`, by default the frames' own resolution and
    ``DRAWING_POSE_PASSES``)."""
    from avatarcli.pipelines.video_avatar import (
        clothe_frames,
        frame_colour_for_frames,
        refine_frames,
        rgb_texture_for_frames,
        score_frames,
    )

    side, passes = drawing_poses or (opts.resolution, DRAWING_POSE_PASSES)
    clothing = refinement = None
    if opts.clothing:  # offsets from the training frames' masks only
        log(f"{name}: clothing offsets from {len(train)} frames")
        body, clothing = clothe_frames(body, frames, opts.seed, indices=train)
    if times is not None and opts.photometric_steps > 0:
        log(f"{name}: photometric pose refinement of {len(train)} frames")
        frames, refinement = refine_frames(
            body, frames, times, opts.photometric_steps, indices=train, borrowers=test
        )
    log(f"{name}: RGB texture from {len(train)} frames")
    t0 = time.perf_counter()
    built = rgb_texture_for_frames(body, frames, train, opts)
    rgb_seconds = time.perf_counter() - t0
    rgb = rgb_scores(body, frames, built, test)
    t0 = time.perf_counter()
    # also for neural_run; frames refined photometrically keep sharper photos, as in the tool
    colour = frame_colour_for_frames(body, frames, train, built.texture[None], refined=refinement is not None)
    rgb_view = rgb_view_scores(body, frames, colour, test)
    view_seconds = time.perf_counter() - t0
    row = {
        "case": name,
        "train_frames": len(train),
        "test_frames": len(test),
        "rgb": {
            **{k: _mean(rgb, k) for k in SCORES},
            "seconds": round(rgb_seconds, 1),
        },
        "rgb_view": {
            **{k: _mean(rgb_view, k) for k in SCORES},
            "seconds": round(rgb_seconds + view_seconds, 1),
        },
    }
    if clothing is not None:
        row["clothing"] = clothing
    if refinement is not None:
        row["pose_refinement"] = refinement
    posed = None
    if test_time and times is not None:
        log(f"{name}: test-time pose refinement of {len(test)} frames")
        t0 = time.perf_counter()
        pose_steps = opts.photometric_steps or 50
        posed, record = test_time_poses(body, frames, times, train, test, pose_steps)
        row["test_time_poses"] = {**record, "seconds": round(time.perf_counter() - t0, 1)}
        row["rgb_view_ttp"] = {k: _mean(rgb_view_scores(body, posed, colour, test), k) for k in SCORES}
        t0 = time.perf_counter()
        drawn, record = test_time_poses_by_render(
            body,
            posed,
            test,
            lambda fr, i: view_colour_drawing(body, fr, colour, i),
            pose_steps,
            side,
            passes,
        )
        row["rgb_view_ttpr"] = {
            **{k: _mean(rgb_view_scores(body, drawn, colour, test), k) for k in SCORES},
            "poses": {**record, "seconds": round(time.perf_counter() - t0, 1)},
        }
    for label, variant in variants:
        log(f"{name}: training {label} ({variant.steps} steps)")
        scores, seconds, losses, model, base, reposed = neural_run(
            body, frames, built, colour, train, test, variant, times
        )
        row[label] = {
            **{k: _mean(scores, k) for k in SCORES},
            "seconds": round(seconds, 1),
            **losses,
        }
        if posed is not None:
            own_posed = posed
            if reposed is not frames:  # its training frames were posed again: so are the test frames
                own_posed, _ = test_time_poses(body, reposed, times, train, test, pose_steps)
            row[f"{label}_ttp"] = {
                k: _mean(score_frames(model, body, own_posed, test, base), k) for k in SCORES
            }
            log(f"{name}: {label}'s test-time poses against its own drawing")
            t0 = time.perf_counter()
            draw = partial(neural_drawing, model, body, colour=base)
            drawn, record = test_time_poses_by_render(body, own_posed, test, draw, pose_steps, side, passes)
            row[f"{label}_ttpr"] = {
                **{k: _mean(score_frames(model, body, drawn, test, base), k) for k in SCORES},
                "poses": {**record, "seconds": round(time.perf_counter() - t0, 1)},
            }
    return row


def eval_iper(
    body,
    opts,
    variants,
    quick: bool,
    tmp: Path,
    ceiling: bool = False,
    test_time: bool = False,
    drawing_poses: tuple[int, int] | None = None,
) -> list[dict]:
    import imageio.v2 as imageio

    if not GIF.exists():
        return []
    frames_np = imageio.mimread(GIF, memtest=False)
    step = 4 if quick else 2
    wanted = [i for i in range(len(frames_np)) if i % step in (0, 1)]
    paths = []
    for i in wanted:
        path = tmp / f"iper_{i:03d}.png"
        imageio.imwrite(path, np.asarray(frames_np[i])[..., :3])
        paths.append(path)
    frames, kept, skipped, fit_seconds = fit_all(paths, [None] * len(paths), body, opts, times=wanted)
    index = {name: k for k, name in enumerate(kept)}
    train = [index[f"iper_{i:03d}.png"] for i in wanted if i % step == 0 and f"iper_{i:03d}.png" in index]
    test = [index[f"iper_{i:03d}.png"] for i in wanted if i % step == 1 and f"iper_{i:03d}.png" in index]
    times = [int(name[len("iper_") : -len(".png")]) for name in kept]
    row = evaluate_split(
        "iPER turn: even → odd", body, frames, train, test, opts, variants, times, test_time, drawing_poses
    )
    if ceiling:
        row["ceiling"] = ceiling_scores(frames, train, test, times)
    row["fit_seconds"] = round(fit_seconds, 1)
    row["skipped"] = skipped
    return [row]


def eval_octopus(body, opts, variants, folds: list[int]) -> list[dict]:
    paths = [OCTO / "frames" / f"{i:04d}.png" for i in range(8)]
    masks = [str(OCTO / "segmentations" / f"{i:04d}.png") for i in range(8)]
    if not all(p.exists() for p in paths):
        return []
    frames, kept, skipped, fit_seconds = fit_all(paths, masks, body, opts)
    rows = []
    for k in folds:
        train = [i for i in range(len(frames)) if i != k]
        row = evaluate_split(f"octopus: hold out {k:04d}", body, frames, train, [k], opts, variants)
        row["fit_seconds"] = round(fit_seconds, 1)
        rows.append(row)
    return rows


def _summary(rows: list[dict], labels: list[str]) -> dict:
    out = {}
    for label in ["rgb", "rgb_view", *labels]:
        got = [r[label] for r in rows if label in r]
        if got:
            out[label] = {k: _mean(got, k) for k in SCORES}
    return out


def option_overrides(pairs: list[str]) -> dict:
    """``["steps=600", "pose_channels=normals"]`` → typed VideoAvatarOptions overrides."""
    from dataclasses import fields

    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    kinds = {f.name: type(f.default) for f in fields(VideoAvatarOptions)}
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in kinds or kinds[name] not in (int, float, str, bool):
            raise SystemExit(f"--set {pair}: expected OPTION=VALUE with a plain VideoAvatarOptions field")
        kind = kinds[name]
        out[name] = text.lower() in ("1", "true", "yes") if kind is bool else kind(text)
    return out


def main(argv: list[str] | None = None) -> int:
    from avatarcli.body import load_body
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, folds and steps at 256 px")
    parser.add_argument("--only", choices=("iper", "octopus"), action="append")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default as the tool, quick 150)"
    )
    parser.add_argument(
        "--fit-iters", type=int, default=None, help="fitting iterations (default 150, quick 60)"
    )
    parser.add_argument("--resolution", type=int, default=None, help="working resolution (512, quick 256)")
    parser.add_argument("--folds", type=str, default=None, help="octopus folds, e.g. 0,4")
    parser.add_argument("--pose-compare", action="store_true", help="also train with normals as input")
    parser.add_argument(
        "--colour-compare", action="store_true", help="also train with view colour off and on"
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="iPER: also score the held-out photos moved, blurred, interpolated",
    )
    parser.add_argument(
        "--test-time-poses",
        action="store_true",
        help="iPER: also score with the held-out poses refined against their training neighbours",
    )
    parser.add_argument(
        "--drawing-pose-side",
        type=int,
        default=0,
        help="test-time poses against the drawing compared at this longer side (0: the frames' own)",
    )
    parser.add_argument(
        "--drawing-pose-passes",
        type=int,
        default=DRAWING_POSE_PASSES,
        help="test-time poses against the drawing: times the frames are drawn and posed again",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="option override")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # 2 threads on a busy 2-core machine ran ~5x slower than 1
    if not DATA.exists():
        print("../shared/data is not present; nothing to evaluate", file=sys.stderr)
        return 0
    quick = args.quick
    opts = VideoAvatarOptions(
        steps=args.steps or (150 if quick else VideoAvatarOptions.steps),
        fit_iters=args.fit_iters or (60 if quick else 150),
        resolution=args.resolution or (256 if quick else 512),
        refine_steps=16 if quick else 32,
        patch=96 if quick else 128,
    )
    opts = replace(opts, **option_overrides(args.set))
    variants = [("neural", opts)]
    if args.pose_compare:
        variants.append(("neural_normals", replace(opts, pose_channels="normals")))
    if args.colour_compare:
        variants.append(("neural_merged", replace(opts, view_colour="off")))
        variants.append(("neural_view", replace(opts, view_colour="on")))
    folds = [int(f) for f in args.folds.split(",")] if args.folds else ([0, 4] if quick else list(range(8)))
    body = load_body("anny")
    only = set(args.only or ("iper", "octopus"))
    result: dict = {
        "quick": quick,
        "options": {
            k: getattr(opts, k)
            for k in (
                "steps",
                "fit_iters",
                "resolution",
                "texture_size",
                "texture_channels",
                "renderer_width",
                "renderer_depth",
                "batch",
                "patch",
            )
        },
        "overrides": args.set,
        "temporal_smoothness": opts.temporal_smoothness,
        "cpu_threads": torch.get_num_threads(),
        "lpips": "not used (no LPIPS/VGG weights available)",
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        if "iper" in only:
            result["iper"] = eval_iper(
                body,
                opts,
                variants,
                quick,
                Path(tmpdir),
                args.ceiling,
                args.test_time_poses,
                (args.drawing_pose_side or opts.resolution, args.drawing_pose_passes),
            )
        if "octopus" in only:
            result["octopus"] = eval_octopus(body, opts, variants, folds)
    labels = [label for label, _ in variants]
    if result.get("octopus"):
        result["octopus_mean"] = _summary(result["octopus"], labels)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    mode = "quick" if quick else "full"
    print(f"video avatars, {mode} run: {result['options']}  (LPIPS not used: no weights)")
    print(f"temporal smoothness (iPER fit) {opts.temporal_smoothness}; overrides: {args.set or 'none'}")
    print("target for the neural avatar on held-out frames: PSNR ≥ 26 dB, SSIM ≥ 0.93, better than RGB")
    print(
        f"clothing offsets: {'on' if opts.clothing else 'off'}; PSNR/SSIM inside the person; pers = whole "
        "person on black (bbox); frm = on black, whole frame"
    )
    header = (
        f"  {'case':28s} {'avatar':20s} {'PSNR':>7s} {'SSIM':>7s} {'IoU':>7s} {'PSNR pers':>9s} "
        f"{'SSIM pers':>9s} {'PSNR frm':>8s} {'SSIM frm':>8s} {'train s':>8s}"
    )
    for key in ("iper", "octopus"):
        rows = result.get(key) or []
        if not rows:
            continue
        print(header)
        for r in rows:
            ttp = [f"{x}{suffix}" for x in ["rgb_view", *labels] for suffix in ("_ttp", "_ttpr")]
            for label in ["rgb", "rgb_view", *labels, *ttp]:
                s = r.get(label)
                if s:
                    print(
                        f"  {r['case']:28s} {label:20s} {s['psnr']:7.2f} {s['ssim']:7.4f} {s['iou']:7.4f} "
                        f"{s['psnr_person']:9.2f} {s['ssim_person']:9.4f} {s['psnr_frame']:8.2f} "
                        f"{s['ssim_frame']:8.4f} {s.get('seconds', float('nan')):8.1f}"
                    )
            extra = f"    train {r['train_frames']} / test {r['test_frames']} frames"
            extra += f", fit {r['fit_seconds']:.0f} s"
            if r.get("skipped"):
                extra += f", skipped {len(r['skipped'])} frames without a whole person"
            print(extra)
            for label, c in (r.get("ceiling") or {}).items():
                print(
                    f"    ceiling: {label:26s} PSNR {c['psnr']:6.2f}  SSIM {c['ssim']:.4f}  "
                    f"({c['frames']} frames)"
                )
    if result.get("octopus_mean"):
        for label, s in result["octopus_mean"].items():
            print(
                f"  octopus mean {label:15s} PSNR {s['psnr']:.2f}  SSIM {s['ssim']:.4f}  IoU {s['iou']:.4f}  "
                f"person PSNR {s['psnr_person']:.2f}  SSIM {s['ssim_person']:.4f}  "
                f"frame PSNR {s['psnr_frame']:.2f}  SSIM {s['ssim_frame']:.4f}"
            )
    print(f"total {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
