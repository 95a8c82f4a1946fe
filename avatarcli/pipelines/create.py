"""``avatar create`` / ``avatar merge``: photos → avatar file + preview, the RGB-texture path.

One person from one or several photos (:func:`create_avatar`):

perceive (keypoints + mask) → fit the body (several views share one shape) → per view, sample
the photo into UV space through the fitted mesh (DINAR Alg. 1, occlusion edges removed) →
merge views by softmax of the normal-to-camera cosine (DINAR Eq. 5) → fill unseen texels on
the body surface → refine the RGB texture through the differentiable render (DINAR App. B) →
avatar file + preview sheet, with the input-view PSNR/SSIM inside (person mask ∩ body render).

``--uv-layout`` (:attr:`CreateOptions.uv_layout`) picks the UV layout the RGB texture is built
in: ``body`` (the body's own), ``dinar`` (DINAR's SMPL-X "front cut" layout from the installed
``dinar_uv_layout`` weights) or the path of a DINAR ``smplx_data/`` folder / ``.npz``. Both
DINAR variants are recorded as ``uv_layout == "dinar"``; a path's layout is embedded in the
avatar file (see :mod:`avatarcli.pipelines.neural_render`) so animating needs no extra file.

``--method dinar`` runs DINAR's neural path instead (:mod:`avatarcli.pipelines.dinar`); with
several photos (``avatar merge``) each view's 21-channel texture inputs are merged by the same
normal-angle softmax before the single diffusion inpainting (:func:`~avatarcli.pipelines.dinar.
merge_dinar_views`).

:func:`create_batch` runs :func:`create_avatar` once per photo (one person each), reporting and
skipping files that fail, resuming with ``skip_existing`` and writing ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarcli._version import __version__
from avatarcli.avatar_file import rgb_for_file
from avatarcli.errors import UserError

#: progress(stage, done, total)
ProgressFn = Callable[[str, int, int], None]

METHODS = ("rgb", "dinar", "stylepeople")
#: RGB avatars from at least this many photos get clothing offsets unless told otherwise.
#: Octopus leave-one-out (merge 7, render the 8th): 26.19 → 26.50 dB mean, every fold better;
#: from one photo the outline says too little (input view pifu_ryota 28.4 → 27.3 dB), so off.
CLOTHING_MIN_VIEWS = 2
#: RGB refinement steps through the render (DINAR App. B) for an avatar that keeps one texture
REFINE_STEPS = 64


@dataclass
class CreateOptions:
    """Everything that changes the avatar (recorded in the avatar's provenance)."""

    method: str = "rgb"
    dinar_steps: int = 200
    sp_image_size: int = 1024  # StylePeople's render size (official 1024; 512/256 are much faster on CPU)
    max_seconds: float | None = None  # StylePeople: stop the staged optimisation after this long
    body: str = "anny"
    smplx_dir: str | None = None
    texture_size: int | None = None  # RGB path: 256, 512, 1024; None = from the person's size
    occlusion: bool = True
    fill: str = "mirror+back+harmonic"
    #: RGB refinement steps through the render; None = :meth:`refine_steps_for`'s default
    refine_steps: int | None = None
    tau: float = 0.1
    uv_layout: str = "body"  # body | dinar | path of a DINAR smplx_data/ folder or .npz (RGB path)
    #: RGB path: fit clothing offsets so the body's outline follows loose clothes and hair;
    #: None = this path's default (:meth:`wants_clothing`)
    clothing: bool | None = None
    #: RGB path: keep per-photo textures for view-dependent colour; None = from the photo count
    view_dependent: bool | None = None
    fit_iters: int = 400
    mask: str | None = None
    keypoints: str | None = None
    #: read a mask / OpenPose JSON kept beside a photo (``x_mask.png``, ``x_keypoints.json``)
    sidecars: bool = True
    fits: list[str] | None = None
    seed: int = 0
    overwrite: bool = False

    def check(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown --method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.texture_size not in (None, 256, 512, 1024):
            raise UserError(f"--texture-size must be auto, 256, 512 or 1024, not {self.texture_size}")
        if self.tau <= 0:
            raise UserError("--tau must be positive")
        if (self.refine_steps is not None and self.refine_steps < 0) or self.fit_iters < 1:
            raise UserError("--refine-steps must be ≥ 0 and --fit-iters ≥ 1")
        from avatarcli.texture import FILL_METHODS

        if self.fill not in FILL_METHODS:
            raise UserError(f"unknown --fill {self.fill!r}; choose one of {', '.join(FILL_METHODS)}")
        if self.view_dependent is True and self.method != "rgb":
            raise UserError(f"--view-dependent applies to --method rgb, not --method {self.method}")
        if self.clothing is True and self.method != "rgb":
            raise UserError(f"--clothing applies to --method rgb; --method {self.method} uses the plain body")
        if self.uv_layout != "body":
            if self.method != "rgb":
                raise UserError(
                    f"--uv-layout applies to --method rgb; --method {self.method} uses its networks' layout"
                )
            from avatarcli.pipelines.neural_render import check_uv_layout_choice

            check_uv_layout_choice(self.uv_layout)  # missing weights / a bad file: before any work

    def wants_clothing(self, views: int) -> bool:
        """Whether ``views`` photos get clothing offsets (the RGB path's default: see
        :data:`CLOTHING_MIN_VIEWS`)."""
        if self.clothing is not None:
            return self.clothing
        return self.method == "rgb" and views >= CLOTHING_MIN_VIEWS

    def refine_steps_for(self, views: int) -> int:
        """RGB refinement steps for an avatar from ``views`` photos: as told, else
        :data:`REFINE_STEPS`, or none when the photos are kept (:meth:`wants_view_colour`) — they
        draw the avatar and the texture only fills what no kept photo saw, so refining it moved
        sparse views of iPER's training frames by ≤ 0.02 dB and cost minutes (``avatar merge`` of
        the octopus's 8 views: 58 s instead of 5 min 9 s, 1.4 GB instead of 3.1 GB)."""
        if self.refine_steps is not None:
            return self.refine_steps
        return 0 if self.wants_view_colour(views) else REFINE_STEPS

    def wants_view_colour(self, views: int) -> bool:
        """Whether ``views`` photos are kept for view-dependent colour (default: from
        :data:`avatarcli.texture.view_dependent.DEFAULT_MIN_VIEWS` photos; one photo has no other
        view to blend)."""
        from avatarcli.texture.view_dependent import DEFAULT_MIN_VIEWS

        if self.method != "rgb" or views < 2:
            return False
        return self.view_dependent if self.view_dependent is not None else views >= DEFAULT_MIN_VIEWS


@dataclass
class CreateResult:
    avatar: Path
    preview: Path
    inputs: list[str]
    psnr: list[float]
    ssim: list[float]
    fit_quality: list[dict]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    #: clothing offsets' report (silhouette IoU per view before/after), None without them
    clothing: dict | None = None
    #: side of the RGB texture (``--texture-size auto`` picks it); None for the neural methods
    texture_size: int | None = None
    #: photos kept for view-dependent colour (0: one merged texture)
    kept_views: int = 0
    #: view-dependent avatars: each photo drawn from the *other* kept photos (leave-one-out),
    #: what to expect from angles it was not given; the input-view scores show its own photo
    new_view_psnr: list[float] = field(default_factory=list)
    new_view_ssim: list[float] = field(default_factory=list)
    #: per photo, where its keypoints and mask came from (detector, alpha matte, or a file)
    perception: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["avatar"], d["preview"] = str(self.avatar), str(self.preview)
        return d


def _photo_tensors(perception, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(np.array(perception.image, copy=True)).to(device)
    image = image.permute(2, 0, 1)[None].float() / 255.0
    mask = torch.from_numpy(np.asarray(perception.mask, np.float32) > 0.5).to(device)[None]
    return image, mask


def default_output(inputs: Sequence[str | os.PathLike], output: str | os.PathLike | None) -> Path:
    """``-o out/`` → ``out/<first input stem>.pt``; ``-o x.pt`` → itself; none → next to the input."""
    first = Path(inputs[0])
    if output is None:
        return first.with_suffix(".pt")
    out = Path(output)
    if out.suffix.lower() == ".pt":
        return out
    return out / f"{first.stem}.pt"


def posed_view(body, fit, perception, device: torch.device):
    """A :class:`~avatarcli.texture.build.TextureView`: the photo with its fitted body and camera,
    and the detected hands and arms for the sampler's guards."""
    from avatarcli.texture.arm_guard import arm_regions
    from avatarcli.texture.build import TextureView
    from avatarcli.texture.hands import hand_regions

    s, p, t = fit.body_params(device)
    with torch.no_grad():
        verts = body(shape=s, pose=p, transl=t).vertices.detach()
    photo, mask = _photo_tensors(perception, device)
    hands = hand_regions((perception.left_hand, perception.right_hand), perception.height, perception.width)
    arms = arm_regions(perception.keypoints, perception.height, perception.width)
    return TextureView(verts, fit.camera().to(device), photo, mask, hands.to(device), arms.to(device))


def clothe_body(body, fits, views, seed: int, device: torch.device, say: ProgressFn | None = None):
    """The body wearing clothing offsets fitted to the photos' masks, and the provenance report."""
    from avatarcli.fitting.clothing import ClothingSettings
    from avatarcli.fitting.clothing import clothe_body as clothe

    report = say or (lambda *_: None)
    params = [fit.body_params(device) for fit in fits]
    return clothe(
        body,
        params[0][0],
        torch.cat([p[1] for p in params]),
        torch.cat([p[2] for p in params]),
        [v.camera for v in views],
        [v.mask.reshape(v.mask.shape[-2:]).float() for v in views],
        ClothingSettings(seed=seed),
        lambda done, total: report("clothing", done, total),
    )


def texture_for_views(
    body,
    shape: torch.Tensor,
    views,
    opts: CreateOptions,
    say: ProgressFn | None = None,
    layout=None,
    lpips=None,
):
    """The RGB texture (:class:`~avatarcli.texture.build.RGBTexture`) of ``views`` under ``opts``,
    in ``layout`` (a :class:`~avatarcli.pipelines.neural_render.UVLayout`; None: the body's own);
    ``lpips`` (optional LPIPS network) is the refinement's perceptual term instead of SSIM.
    ``opts.texture_size`` None picks the size from the person's height in the photos
    (:func:`~avatarcli.texture.build.auto_texture_size`)."""
    from avatarcli.pipelines.progress import StepBars
    from avatarcli.texture import body_texel_maps
    from avatarcli.texture.build import auto_texture_size, build_rgb_texture

    step = StepBars(say, "texture: ")
    size = opts.texture_size or auto_texture_size(views)
    maps = body_texel_maps(body, size, shape, layout=layout)
    built = build_rgb_texture(
        body, views, texture_size=size, fill_method=opts.fill, tau=opts.tau,
        detect_occlusion=opts.occlusion, refine_steps=opts.refine_steps_for(len(views)), maps=maps,
        progress=step, lpips=lpips,
    )  # fmt: skip
    step.finish()
    return built, maps


def create_avatar(
    images: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    opts: CreateOptions | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> CreateResult:
    """Make one avatar of one person from one or more photos (see module docstring)."""
    opts = opts or CreateOptions()
    opts.check()
    if not images:
        raise UserError("no input photos given")
    if opts.method == "dinar":
        from avatarcli.pipelines.dinar import DINAR_WEIGHTS
        from avatarcli.weights_registry import require_weights

        require_weights(DINAR_WEIGHTS)  # stops before any work, naming the file and how to get it
    elif opts.method == "stylepeople":
        from avatarcli.weights_registry import require_weights

        require_weights(("stylepeople_generator", "stylepeople_renderer"))
    device = torch.device(device)
    target = default_output(images, output)
    if target.exists() and not opts.overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it (or --skip-existing)")
    say = progress or (lambda *_: None)
    torch.manual_seed(opts.seed)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    from avatarcli.avatar_file import Avatar
    from avatarcli.body import load_body
    from avatarcli.fitting.optimize import FitSettings, fit_perceptions
    from avatarcli.perception import perceive
    from avatarcli.perception.perceive import small_person_warning
    from avatarcli.pipelines.neural_render import resolve_uv_layout

    if len(images) > 1 and (opts.mask or opts.keypoints):
        raise UserError("--mask/--keypoints apply to a single photo; give one photo, or leave them out")
    body = load_body(opts.body, model_dir=opts.smplx_dir).to(device)
    layout = resolve_uv_layout(opts.uv_layout, body)  # a layout for another mesh: before any work
    t0 = time.perf_counter()
    perceptions = []
    for i, path in enumerate(images):
        say("perception", i, len(images))
        perceptions.append(perceive(path, mask=opts.mask, keypoints=opts.keypoints, sidecars=opts.sidecars))
    say("perception", len(images), len(images))
    timings["perception"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if opts.fits:
        fits = _load_fits(opts.fits, body, images)
    else:
        settings = FitSettings(iters=opts.fit_iters, seed=opts.seed)
        fits = fit_perceptions(
            perceptions, body, settings=settings, progress=lambda stage, d, t: say(f"fit: {stage}", d, t)
        )
    timings["fitting"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shape = torch.as_tensor(np.asarray(fits[0].shape, np.float32), device=device)[None]
    views = [
        posed_view(body, fit, perception, device) for fit, perception in zip(fits, perceptions, strict=True)
    ]
    clothing_report = None
    if opts.wants_clothing(len(views)):
        body, clothing_report = clothe_body(body, fits, views, opts.seed, device, say)
        views = [posed_view(body, f, p, device) for f, p in zip(fits, perceptions, strict=True)]
        timings["clothing"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    from avatarcli.avatar_file import save_avatar

    records, provenance = _view_records(fits, images), _provenance(opts, images, fits)
    preview = target.with_name(target.stem + "_preview.png")
    new_view_scores: list[tuple[float, float]] = []  # view-dependent RGB avatars only
    if opts.method == "dinar":
        avatar, scores, tiles = _dinar_avatar(body, shape, views, records, provenance, opts, device, say)
        timings["dinar"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        save_avatar(avatar, target, overwrite=opts.overwrite)
        from avatarcli.render.preview import save_contact_sheet

        save_contact_sheet(preview, [("input", perceptions[0].image), *tiles], tile_size=256, columns=4)
    elif opts.method == "stylepeople":
        avatar, scores, notes = _stylepeople_avatar(
            body, shape, views, perceptions, records, provenance, opts, device, say
        )
        timings["stylepeople"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        save_avatar(avatar, target, overwrite=opts.overwrite)
        from avatarcli.pipelines.stylepeople_fit import SPFitOptions, stylepeople_preview_tiles
        from avatarcli.render.preview import save_contact_sheet

        sp_tiles = stylepeople_preview_tiles(
            avatar, body, views[0], SPFitOptions(image_size=opts.sp_image_size), device
        )
        save_contact_sheet(preview, [("input", perceptions[0].image), *sp_tiles], tile_size=256, columns=4)
    else:
        from avatarcli.pipelines.perceptual import load_lpips_if_installed, perceptual_name
        from avatarcli.texture.view_dependent import to_avatar_textures

        refining = opts.refine_steps_for(len(views)) > 0
        lpips = load_lpips_if_installed(device) if refining else None
        built, maps = texture_for_views(body, shape, views, opts, say, layout=layout, lpips=lpips)
        perceptual = perceptual_name(lpips) if refining else "none"
        provenance = {
            **provenance,
            "refine_perceptual": perceptual,
            "texture_size": built.stats["texture_size"],
            "refine_steps": built.stats["refine_steps"],
        }
        if clothing_report is not None:
            provenance["clothing"] = clothing_report
        texture = built.texture
        view_colour = None
        if opts.wants_view_colour(len(views)):
            view_colour = _view_colour(body, shape, views, say)
            provenance["kept_views"] = len(view_colour.views)
        timings["texture"] = time.perf_counter() - t0
        t0 = time.perf_counter()

        def score(v, without: int | None = None) -> tuple[float, float]:  # as the avatar draws it
            return input_view_scores(
                body, v.vertices, v.camera, texture, v.image, v.mask, layout=layout,
                view_colour=view_colour, without=without,
            )  # fmt: skip

        scores = [score(v) for v in views]
        if view_colour is not None:
            from avatarcli.texture.view_dependent import kept_views

            stored = {index: k for k, index in enumerate(kept_views(len(views)))}  # view → kept frame
            new_view_scores = [score(v, without=stored.get(i)) for i, v in enumerate(views)]
        avatar = Avatar(
            body_backend=body.name,
            body_model_id=body.model_id,
            shape=shape[0].cpu(),
            uv_layout=layout.name,
            textures={
                "rgb": rgb_for_file(texture),
                "known": built.exact.to(torch.uint8).cpu(),  # B_smp: hit exactly by a photo pixel
                "filled": built.seen.to(torch.uint8).cpu(),  # B_fill: sampled + the 3×3 ring
                **_layout_entries(opts.uv_layout, layout),
                **(to_avatar_textures(view_colour.views) if view_colour is not None else {}),
            },
            weights=_layout_weights(opts.uv_layout),
            views=records,
            provenance=provenance,
            clothing_offsets=body.offsets.cpu() if clothing_report is not None else None,
        )
        save_avatar(avatar, target, overwrite=opts.overwrite)
        _write_preview(preview, body, shape, perceptions[0], views[0], texture, maps, opts.occlusion, layout)
    timings["save"] = time.perf_counter() - t0
    warnings = [w for p in perceptions for w in p.warnings] + [w for f in fits for w in f.warnings]
    warnings += [w for w in map(small_person_warning, perceptions) if w]
    if opts.method == "stylepeople":
        warnings += notes  # e.g. no encoder: started from the mean latent; SSIM instead of LPIPS
    return CreateResult(
        avatar=target,
        preview=preview,
        inputs=[str(p) for p in images],
        psnr=[round(s[0], 2) for s in scores],
        ssim=[round(s[1], 4) for s in scores],
        fit_quality=[fit.quality for fit in fits],
        warnings=warnings,
        seconds=round(time.perf_counter() - t_start, 2),
        timings={k: round(v, 2) for k, v in timings.items()},
        clothing=clothing_report,
        texture_size=provenance.get("texture_size") if opts.method == "rgb" else None,
        kept_views=int(provenance.get("kept_views", 0)),
        new_view_psnr=[round(s[0], 2) for s in new_view_scores],
        new_view_ssim=[round(s[1], 4) for s in new_view_scores],
        perception=[p.sources() for p in perceptions],
    )


def _view_colour(body, shape, views, say: ProgressFn):
    """The photos kept for view-dependent colour
    (:class:`avatarcli.texture.view_dependent.ViewColour`)."""
    from avatarcli.texture.view_dependent import ViewColour, build_view_photos, kept_views, torso_vertex_ids

    say("texture: kept photos", 0, 1)
    with torch.no_grad():
        rest = body.rest(shape).vertices[0]
    chosen = [views[i] for i in kept_views(len(views))]
    kept = build_view_photos(body, chosen).to(rest.device)
    say("texture: kept photos", 1, 1)
    return ViewColour(kept, body.faces, rest, torso_vertex_ids(body).to(rest.device))


def _layout_entries(choice: str, layout) -> dict[str, torch.Tensor]:
    """A user's layout file travels inside the avatar (installed/body layouts are found again)."""
    from avatarcli.pipelines.neural_render import UV_LAYOUT_CHOICES, embedded_layout_textures

    return {} if choice in UV_LAYOUT_CHOICES else embedded_layout_textures(layout)


def _layout_weights(choice: str) -> dict[str, str]:
    """The installed DINAR layout's sha256, so rendering refuses a different file later."""
    from avatarcli.pipelines.neural_render import DINAR_UV_LAYOUT, UV_LAYOUT_WEIGHTS, manifest_sha256

    sha = manifest_sha256(UV_LAYOUT_WEIGHTS) if choice == DINAR_UV_LAYOUT else None
    return {UV_LAYOUT_WEIGHTS: sha} if sha else {}


def _view_records(fits, images) -> list[dict]:
    """What the avatar remembers of each input view (pose + camera) for ``--view input``."""
    return [
        {
            "image_name": Path(fit.image_path or images[i]).name,
            "pose": torch.as_tensor(np.asarray(fit.pose, np.float32)),
            "transl": torch.as_tensor(np.asarray(fit.transl, np.float32)),
            "K": torch.as_tensor(np.asarray(fit.K, np.float32)),
            "R": torch.as_tensor(np.asarray(fit.R, np.float32)),
            "t": torch.as_tensor(np.asarray(fit.t, np.float32)),
            "width": int(fit.width),
            "height": int(fit.height),
        }
        for i, fit in enumerate(fits)
    ]


def _provenance(opts: CreateOptions, images, fits) -> dict:
    from avatarcli.io_utils import sha256_file

    return {
        "method": opts.method,
        "seed": opts.seed,
        "tool_version": __version__,
        "inputs": [{"name": Path(p).name, "sha256": sha256_file(p)} for p in images],
        "params": {k: v for k, v in asdict(opts).items() if k not in ("overwrite",)},
        "fit_quality": [fit.quality for fit in fits],
    }


def _stylepeople_avatar(
    body, shape, views, perceptions, records, provenance, opts: CreateOptions, device, say
):
    """StylePeople's fitting of the photos (latent → generator → noise → texture stages)."""
    from avatarcli.pipelines.stylepeople_fit import SPFitOptions, create_stylepeople_avatar, face_box_of

    sp = SPFitOptions(image_size=opts.sp_image_size, max_seconds=opts.max_seconds)
    avatar, scores, fit = create_stylepeople_avatar(
        views, body, shape, records, provenance, seed=opts.seed, options=sp, device=device,
        faces=[face_box_of(p) for p in perceptions],
        progress=lambda stage, done, total, loss: say(f"stylepeople: {stage}", done, total),
    )  # fmt: skip
    return avatar, scores, list(fit.notes)


def _dinar_avatar(body, shape, views, records, provenance, opts: CreateOptions, device, say):
    """DINAR's neural path for the fitted photos (one, or several views merged): crops, neural
    texture + diffusion inpainting, refinement; returns the avatar, each view's crop scores and
    preview tiles."""
    from avatarcli.pipelines.dinar import (
        DinarOptions,
        DinarView,
        create_merged_dinar_avatar,
        dinar_crop,
        load_dinar_networks,
    )
    from avatarcli.pipelines.posing import make_frame_renderer
    from avatarcli.render import framing_camera
    from avatarcli.texture import psnr, ssim

    networks = load_dinar_networks(device)
    size = networks.encoder.config.image_size
    crops = [dinar_crop(v.image, v.mask, v.vertices, v.camera, size=size) for v in views]
    provenance = {**provenance, "params": {**provenance["params"], "steps": opts.dinar_steps}}
    dinar_options = DinarOptions(steps=opts.dinar_steps, refine_steps=opts.refine_steps_for(len(views)))
    avatar, _ = create_merged_dinar_avatar(
        [DinarView(c.photo, c.mask, v.vertices, c.camera) for c, v in zip(crops, views, strict=True)],
        body, shape, networks, dinar_options,
        tau=opts.tau, seed=opts.seed, views=records, provenance=provenance, progress=say,
    )  # fmt: skip
    avatar.renderer = None  # the installed renderer (its sha256 is in avatar.weights) draws it
    draw = make_frame_renderer(avatar, body, device, (1.0, 1.0, 1.0))
    scores, renders = [], []
    with torch.no_grad():
        for crop, view in zip(crops, views, strict=True):
            frame = torch.from_numpy(draw(view.vertices, crop.camera)).permute(0, 3, 1, 2).float() / 255
            region = crop.mask.reshape(1, *crop.photo.shape[-2:]).bool()
            image = torch.where(region[:, None], frame.to(crop.photo), crop.photo)
            scores.append((float(psnr(image, crop.photo, region)), float(ssim(image, crop.photo, region))))
            renders.append(frame[0])
        rest = body(shape=shape).vertices
        turns = draw(rest.expand(3, -1, -1), framing_camera(rest, [0.0, 90.0, 180.0], size=256).to(device))
    rgb = avatar.textures["rgb"]
    tiles = [
        ("DINAR crop", crops[0].photo[0]),
        ("neural render, input view", renders[0]),
        ("RGB channels", rgb),
    ]
    tiles += [(f"neural render, view {k + 1}", frame) for k, frame in enumerate(renders[1:4], start=1)]
    tiles += [(f"{name} (rest)", img) for name, img in zip(("front", "side", "back"), turns, strict=True)]
    return avatar, scores, tiles


def _load_fits(paths: Sequence[str], body, images: Sequence[str | os.PathLike]):
    from avatarcli.fitting.result import load_fit

    fits = [load_fit(p) for p in paths]
    if len(fits) != len(images):
        raise UserError(f"--fit gave {len(fits)} fit files for {len(images)} photos; give one per photo")
    for path, fit in zip(paths, fits, strict=True):
        if fit.body != body.name or fit.model_id != body.model_id:
            raise UserError(
                f"fit file {path} is for body {fit.body} ({fit.model_id}), not {body.model_id}; refit"
            )
    return fits


def input_view_scores(
    body, vertices, camera, texture, photo, mask, *, layout=None, view_colour=None, without: int | None = None
) -> tuple[float, float]:
    """PSNR/SSIM of the re-rendered input view vs the photo inside (person mask ∩ body render);
    ``texture`` in ``layout`` (default: the body's own UV layout), drawn under the kept frames'
    colour when there is ``view_colour`` (:class:`~avatarcli.texture.view_dependent.ViewColour`),
    ``without`` one of them."""
    from avatarcli.render import render_textured
    from avatarcli.texture import psnr, ssim
    from avatarcli.texture.body_maps import layout_of

    uv, uv_faces = (t.to(vertices.device) for t in layout_of(body, layout))
    with torch.no_grad():
        if view_colour is not None:
            image, coverage = view_colour.render(
                vertices, camera, texture[None], uv, uv_faces, without=without, background=0.0
            )
        else:
            image, coverage = render_textured(
                vertices, body.faces, uv, uv_faces, texture[None], camera, background=0.0
            )
        region = coverage[:, 0].bool() & mask.bool()
        if not bool(region.any()):
            return float("nan"), float("nan")
        # outside the scored region both images show the photo, so SSIM windows that straddle
        # the region's edge judge only the avatar's pixels, not our render's blank background
        image = torch.where(region[:, None], image, photo)
        return float(psnr(image, photo, region)), float(ssim(image, photo, region))


def _write_preview(path, body, shape, perception, view, texture, maps, occlusion: bool, layout=None) -> None:
    """Input, fit overlay, re-render, texture, occlusion before/after, turntable views."""
    from avatarcli.render import render_textured
    from avatarcli.render.preview import orbit_views, overlay, save_contact_sheet
    from avatarcli.texture import sample_view
    from avatarcli.texture.body_maps import layout_of

    verts, camera = view.vertices, view.camera
    uv, uv_faces = (t.to(verts.device) for t in layout_of(body, layout))
    with torch.no_grad():
        grey = torch.full((1, 3, 2, 2), 0.75, device=verts.device)
        mesh, cover = render_textured(verts, body.faces, uv, uv_faces, grey, camera, shade=True)
        rerender, _ = render_textured(verts, body.faces, uv, uv_faces, texture[None], camera)
        rest = body(shape=shape).vertices[0]
        turns = orbit_views(rest, body.faces, uv, uv_faces, texture[None], size=256)
    tiles = [
        ("input", perception.image),
        ("fit overlay", overlay(perception.image, mesh[0], cover[0, 0])),
        ("input view re-rendered", rerender[0]),
        ("texture", texture),
    ]
    if occlusion:  # what the occlusion detector removed from the first photo's samples
        plain, _ = sample_view(body, verts, camera, view.image, view.mask, maps, detect_occlusion=False)
        masked, _ = sample_view(
            body, verts, camera, view.image, view.mask, maps, detect_occlusion=True, hands=view.hands,
            arms=view.arms,
        )  # fmt: skip
        tiles += [("sampled, no occlusion mask", plain.rgb[0]), ("sampled, occlusion mask", masked.rgb[0])]
    tiles.extend((f"{name} (rest)", img) for name, img in turns)
    save_contact_sheet(path, tiles, tile_size=256, columns=4)


@dataclass
class BatchItem:
    input: str
    status: str  # "created" | "skipped" | "failed"
    detail: str = ""
    result: dict | None = None


def create_batch(
    photos: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    opts: CreateOptions | None = None,
    *,
    skip_existing: bool = False,
    device: torch.device | str = "cpu",
    on_file: Callable[[int, int, str], None] | None = None,
    progress: ProgressFn | None = None,
) -> list[BatchItem]:
    """One avatar per photo into ``out_dir``; bad files are reported and skipped."""
    opts = opts or CreateOptions()
    opts.check()
    out = Path(out_dir)
    items: list[BatchItem] = []
    try:
        for k, photo in enumerate(photos):
            if on_file:
                on_file(k, len(photos), str(photo))
            target = out / f"{Path(photo).stem}.pt"
            if skip_existing and target.exists():
                items.append(BatchItem(str(photo), "skipped", "exists"))
                continue
            try:
                result = create_avatar([photo], target, opts, device=device, progress=progress)
                items.append(BatchItem(str(photo), "created", str(result.avatar), result.as_dict()))
            except UserError as exc:
                items.append(BatchItem(str(photo), "failed", str(exc)))
        if on_file:
            on_file(len(photos), len(photos), "")
    finally:  # also on Ctrl-C: finished avatars are intact and listed
        if items:
            _write_summary(out / "summary.json", items)
    return items


def _write_summary(path: Path, items: list[BatchItem]) -> None:
    from avatarcli.io_utils import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps([asdict(i) for i in items], indent=2, default=str))


def split_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(photos, sidecars): files as given and folders expanded to the images inside (sorted),
    without the masks, keypoint files, previews … kept beside the photos among them (a shell glob
    such as ``views/*.png`` lists those too)."""
    from avatarcli.perception.sidecars import IMAGE_SUFFIXES, photos_in

    def images(folder: Path) -> list[Path]:
        return sorted(q for q in folder.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())

    listed: list[Path] = []
    empty: list[Path] = []  # folders given that hold no image
    for p in map(Path, paths):
        if p.is_dir():
            found = images(p)
            listed.extend(found)
            empty += [] if found else [p]
        else:
            listed.append(p)
    photos = photos_in(listed)
    if not photos:
        hint = f" ({listed[0].name} is kept beside a photo: a mask, keypoints, a preview …)" if listed else ""
        for folder in empty:  # a dataset's root: name its sub-folders of images
            subs = [q.name for q in sorted(folder.iterdir()) if q.is_dir() and images(q)]
            if subs:
                hint = f" in {folder}; its sub-folders hold images ({', '.join(subs)}): "
                hint += "give the photos' folder"
                break
        raise UserError(f"no input photos found{hint}")
    return photos, [p for p in listed if p not in photos]


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The photos among ``paths`` (see :func:`split_inputs`)."""
    return split_inputs(paths)[0]
