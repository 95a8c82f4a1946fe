"""``avatar create`` (one avatar per photo, batches) and ``avatar merge`` (one avatar from views)."""

from __future__ import annotations

from pathlib import Path

import typer


def _options(**kw):
    from avatarcli.cli.app import state
    from avatarcli.pipelines.create import CreateOptions

    return CreateOptions(seed=state.seed, **kw)


def _texture_size(text: str) -> int | None:
    """``--texture-size``: "auto" (None: chosen from the person's size) or a number of texels."""
    from avatarcli.errors import UserError

    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--texture-size must be auto, 256, 512 or 1024, not {text!r}") from None


def _video_options(texture_size: int | None, **kw):
    """Video avatars keep their own default texture size unless one is given."""
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    return (
        VideoAvatarOptions(**kw)
        if texture_size is None
        else VideoAvatarOptions(texture_size=texture_size, **kw)
    )


def _view_colour(flag: bool | None) -> str:
    """--view-dependent / --no-view-dependent / neither → a video avatar's view colour choice."""
    return "auto" if flag is None else "on" if flag else "off"


def register(app: typer.Typer) -> None:
    common = dict(
        method=typer.Option("rgb", "--method", help="rgb (no weights), dinar or stylepeople (need weights)."),
        steps=typer.Option(200, "--steps", help="DDIM steps for --method dinar (DINAR uses 200)."),
        sp_size=typer.Option(1024, "--sp-size", help="Render size for --method stylepeople (official 1024)."),
        max_seconds=typer.Option(
            None, "--max-seconds", help="Stop --method stylepeople's optimisation early."
        ),
        body=typer.Option("anny", "--body", help="Body model: anny (bundled) or smplx (your model files)."),
        smplx_dir=typer.Option(
            None, "--smplx-dir", help="Folder with SMPL-X model files (for --body smplx)."
        ),
        texture_size=typer.Option(
            "auto",
            "--texture-size",
            help="UV texture size: 256, 512, 1024, or auto (256; 512 when the person is ≥ 512 px tall).",
        ),
        no_occlusion=typer.Option(
            False, "--no-occlusion", help="Do not mask occlusion edges before sampling."
        ),
        fill=typer.Option(
            "mirror+back+harmonic",
            "--fill",
            help="How unseen texels are filled: harmonic, mirror+harmonic, back+harmonic or "
            "mirror+back+harmonic (copy the other arm's / the other side's colour, then smooth).",
        ),
        uv_layout=typer.Option(
            "body",
            "--uv-layout",
            help="UV layout of the RGB texture: body, dinar (installed DINAR layout) or a DINAR "
            "smplx_data/ folder or .npz with uv + uv_faces (needs --body smplx).",
        ),
        refine_steps=typer.Option(
            None,
            "--refine-steps",
            help="RGB refinement steps through the render (default 64; 0 when the photos are kept "
            "for view-dependent colour, which draws the avatar; --video/--neural: 32 or 0).",
            show_default=False,
        ),
        fit_iters=typer.Option(400, "--fit-iters", help="Body-fitting iterations."),
        clothing=typer.Option(
            None,
            "--clothing/--no-clothing",
            help="Fit clothing offsets so the avatar's outline follows loose clothes and hair "
            "(RGB and video avatars; default: on for several photos and for video).",
            show_default=False,
        ),
        view_dependent=typer.Option(
            None,
            "--view-dependent/--no-view-dependent",
            help="Keep the photos in the avatar file (up to 36, cropped to the person) and draw "
            "each new view from the nearest ones; --video/--neural: the renderer corrects that "
            "colour (default: on from 2 photos or frames).",
            show_default=False,
        ),
        sidecars=typer.Option(
            True,
            "--sidecars/--no-sidecars",
            help="Read the person mask / OpenPose keypoints kept beside a photo (x_mask.png, "
            "x_keypoints.json, or masks/ and keypoints/ folders next to the photos' folder); "
            "such files are never taken for photos.",
        ),
        overwrite=typer.Option(False, "--overwrite", help="Replace existing avatar files."),
        json_out=typer.Option(False, "--json", help="Print a JSON summary."),
    )

    @app.command(help="Make one avatar per photo (files or folders); bad files are reported and skipped.")
    def create(
        photos: list[Path] = typer.Argument(None, help="Photos or folders of photos."),
        output: Path = typer.Option(
            Path("out"), "-o", "--output", help="Output folder (or a .pt for one photo)."
        ),
        video: Path = typer.Option(
            None, "--video", help="Make a neural avatar from a video (no weights needed)."
        ),
        every: int = typer.Option(1, "--every", help="--video: use every N-th frame."),
        max_frames: int = typer.Option(60, "--max-frames", help="--video: at most this many frames."),
        train_steps: int = typer.Option(400, "--train-steps", help="--video: neural training steps."),
        pose_channels: str = typer.Option(
            "none", "--pose-channels", help="--video: none or normals (D²G-Net)."
        ),
        temporal_smoothness: float = typer.Option(
            30.0,
            "--temporal-smoothness",
            help="--video: how strongly neighbouring frames' fits agree (0 = off).",
        ),
        photometric_steps: int = typer.Option(
            50,
            "--photometric-steps",
            help="--video: steps refining each frame's pose so its photo agrees with its "
            "neighbours' (0 = off).",
        ),
        pose_rounds: int = typer.Option(
            2,
            "--pose-rounds",
            help="--video: rounds of posing each frame again on the trained avatar's own drawing "
            "and training a new avatar on those poses (0 = train once; each round costs about one "
            "training).",
        ),
        mask: Path = typer.Option(None, "--mask", help="Person mask image (one photo only)."),
        keypoints: Path = typer.Option(None, "--keypoints", help="OpenPose JSON (one photo only)."),
        fit: list[Path] = typer.Option(None, "--fit", help="Reuse a fit file from avatar fit."),
        skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip photos whose avatar exists."),
        method: str = common["method"],
        steps: int = common["steps"],
        sp_size: int = common["sp_size"],
        max_seconds: float = common["max_seconds"],
        body: str = common["body"],
        smplx_dir: Path = common["smplx_dir"],
        texture_size: str = common["texture_size"],
        no_occlusion: bool = common["no_occlusion"],
        fill: str = common["fill"],
        uv_layout: str = common["uv_layout"],
        refine_steps: int | None = common["refine_steps"],
        fit_iters: int = common["fit_iters"],
        clothing: bool | None = common["clothing"],
        view_dependent: bool | None = common["view_dependent"],
        sidecars: bool = common["sidecars"],
        overwrite: bool = common["overwrite"],
        json_out: bool = common["json_out"],
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress, say_not_photos, stage_progress
        from avatarcli.errors import UserError
        from avatarcli.pipelines.create import create_avatar, create_batch, split_inputs
        from avatarcli.runtime import resolve_device, seed_everything

        seed_everything(state.seed)
        device = resolve_device(state.device)
        size = _texture_size(texture_size)
        if video is not None:
            if photos:
                raise UserError("give either photos or --video, not both")
            if uv_layout != "body":
                raise UserError("--uv-layout applies to photo avatars (--method rgb), not to --video")
            vopts = _video_options(
                size,
                every=every, max_frames=max_frames, steps=train_steps, pose_channels=pose_channels,
                body=body, smplx_dir=str(smplx_dir) if smplx_dir else None, seed=state.seed,
                overwrite=overwrite, temporal_smoothness=temporal_smoothness,
                photometric_steps=photometric_steps, pose_rounds=pose_rounds,
                clothing=True if clothing is None else clothing,
                view_colour=_view_colour(view_dependent), refine_steps=refine_steps,
            )  # fmt: skip
            _run_video(video, output, vopts, device, json_out)
            return
        if not photos:
            raise UserError("give one or more photos (or a folder), or --video clip.mp4")
        if view_dependent is not None:
            raise UserError("--view-dependent needs several views: use avatar merge, or --video")
        inputs, extras = split_inputs(photos)
        opts = _options(
            method=method, dinar_steps=steps, sp_image_size=sp_size, max_seconds=max_seconds, body=body,
            smplx_dir=str(smplx_dir) if smplx_dir else None,
            texture_size=size, occlusion=not no_occlusion, fill=fill, refine_steps=refine_steps,
            uv_layout=uv_layout, fit_iters=fit_iters, mask=str(mask) if mask else None,
            keypoints=str(keypoints) if keypoints else None, fits=[str(f) for f in fit] if fit else None,
            overwrite=overwrite, clothing=clothing, sidecars=sidecars,
        )  # fmt: skip
        con = console()
        say_not_photos(con, extras)
        single = len(inputs) == 1 and output.suffix.lower() == ".pt"
        if (mask or keypoints or fit) and len(inputs) != 1:
            raise UserError("--mask, --keypoints and --fit apply to a single photo")
        with progress() as bar:
            stages = stage_progress(bar)
            if single or mask or keypoints or fit:
                result = create_avatar(inputs, output, opts, device=device, progress=stages)
                items = None
            else:
                files = bar.add_task("photos", total=len(inputs), status="")

                def on_file(done: int, total: int, name: str) -> None:
                    bar.update(files, completed=done, status=Path(name).name if name else "")

                items = create_batch(
                    inputs, output, opts, skip_existing=skip_existing, device=device, on_file=on_file,
                    progress=stages,
                )  # fmt: skip
        if items is None:
            if json_out:
                print_json(result.as_dict())
            else:
                _print_result(con, result.as_dict())
            return
        if json_out:
            print_json([i.__dict__ for i in items])
        else:
            _print_table(con, items)
        if items and all(i.status == "failed" for i in items):
            raise UserError(f"no avatar was created ({len(items)} failed); see {output / 'summary.json'}")

    @app.command(
        help="Make ONE avatar from several photos of the same person (one shape and texture; "
        "new views drawn from the nearest photos)."
    )
    def merge(
        photos: list[Path] = typer.Argument(..., help="Photos (views) of one person, or a folder."),
        output: Path = typer.Option(None, "-o", "--output", help="Output .pt (default: <first>.pt)."),
        tau: float = typer.Option(0.1, "--tau", help="Softmax temperature of the normal-angle merge."),
        neural: bool = typer.Option(
            False, "--neural", help="Train a neural texture + renderer on the frames."
        ),
        train_steps: int = typer.Option(400, "--train-steps", help="--neural: training steps."),
        pose_channels: str = typer.Option("none", "--pose-channels", help="--neural: none or normals."),
        method: str = common["method"],
        steps: int = common["steps"],
        sp_size: int = common["sp_size"],
        max_seconds: float = common["max_seconds"],
        body: str = common["body"],
        smplx_dir: Path = common["smplx_dir"],
        texture_size: str = common["texture_size"],
        no_occlusion: bool = common["no_occlusion"],
        fill: str = common["fill"],
        uv_layout: str = common["uv_layout"],
        refine_steps: int | None = common["refine_steps"],
        fit_iters: int = common["fit_iters"],
        clothing: bool | None = common["clothing"],
        view_dependent: bool | None = common["view_dependent"],
        sidecars: bool = common["sidecars"],
        overwrite: bool = common["overwrite"],
        json_out: bool = common["json_out"],
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress, say_not_photos, stage_progress
        from avatarcli.pipelines.create import create_avatar, split_inputs
        from avatarcli.runtime import resolve_device, seed_everything

        seed_everything(state.seed)
        inputs, extras = split_inputs(photos)
        say_not_photos(console(), extras)
        size = _texture_size(texture_size)
        if neural:
            from avatarcli.errors import UserError

            if uv_layout != "body":
                raise UserError("--uv-layout applies to --method rgb, not to --neural")

            vopts = _video_options(
                size,
                steps=train_steps, pose_channels=pose_channels, body=body, max_frames=len(inputs),
                smplx_dir=str(smplx_dir) if smplx_dir else None, seed=state.seed, overwrite=overwrite,
                clothing=True if clothing is None else clothing, sidecars=sidecars,
                view_colour=_view_colour(view_dependent), refine_steps=refine_steps,
            )  # fmt: skip
            _run_video(
                [str(p) for p in inputs], output or Path("out"), vopts, resolve_device(state.device), json_out
            )
            return
        opts = _options(
            method=method, dinar_steps=steps, sp_image_size=sp_size, max_seconds=max_seconds, body=body,
            smplx_dir=str(smplx_dir) if smplx_dir else None,
            texture_size=size, occlusion=not no_occlusion, fill=fill, refine_steps=refine_steps,
            uv_layout=uv_layout, fit_iters=fit_iters, tau=tau, overwrite=overwrite, clothing=clothing,
            view_dependent=view_dependent, sidecars=sidecars,
        )  # fmt: skip
        with progress() as bar:
            result = create_avatar(
                inputs, output, opts, device=resolve_device(state.device), progress=stage_progress(bar)
            )
        if json_out:
            print_json(result.as_dict())
        else:
            _print_result(console(), result.as_dict())


def _run_video(inputs, output: Path, opts, device, json_out: bool) -> None:
    """A neural avatar from a video or frames (fit per frame, train texture + renderer)."""
    from avatarcli.cli.output import console, print_json, progress, stage_progress
    from avatarcli.pipelines.video_avatar import create_video_avatar

    with progress() as bar:
        result = create_video_avatar(inputs, output, opts, device=device, progress=stage_progress(bar))
    summary = result.as_dict()
    if json_out:
        print_json(summary)
        return
    con = console()
    con.print(f"wrote [bold]{summary['avatar']}[/] and {summary['preview']} in {summary['seconds']:.1f} s")
    used, skipped = len(summary["frames_used"]), len(summary["frames_skipped"])
    con.print(
        f"frames: {used} used, {skipped} skipped; re-rendered PSNR {summary['psnr']:.1f} dB,",
        f"SSIM {summary['ssim']:.3f}, mask IoU {summary['mask_iou']:.3f} (mean)",
    )
    files = summary.get("perception_files") or {}
    if any(files.values()):
        con.print(f"read from files: {files['masks']} masks, {files['keypoints']} keypoint files")
    if summary.get("new_view_psnr") is not None:
        con.print(_new_views_line("frame", summary["new_view_psnr"], summary["new_view_ssim"]))
    for w in summary.get("warnings", []):
        con.print(f"[yellow]warning:[/] {w}")


def _sources_line(inputs: list[str], sources: list[dict]) -> str | None:
    """Which photos read their keypoints or mask from a file (given, or found beside them)."""
    parts = []
    for photo, src in zip(inputs, sources, strict=False):
        # a file's path has a suffix; a detector's name ("mediapipe", "alpha", …) has none
        files = [f"{kind} {Path(f).name}" for kind, f in src.items() if Path(f).suffix]
        if files:
            parts.append(f"{Path(photo).name}: " + ", ".join(files))
    return "read from files: " + "; ".join(parts) if parts else None


def _new_views_line(item: str, psnr: float, ssim: float) -> str:
    return f"new views (each {item} drawn from the others): PSNR {psnr:.1f} dB, SSIM {ssim:.3f} (mean)"


def _print_result(con, r: dict) -> None:
    psnr = ", ".join(f"{p:.1f}" for p in r["psnr"])
    ssim = ", ".join(f"{s:.3f}" for s in r["ssim"])
    con.print(f"wrote [bold]{r['avatar']}[/] and {r['preview']} in {r['seconds']:.1f} s")
    con.print(f"input view: PSNR {psnr} dB, SSIM {ssim} (inside person mask ∩ body)")
    if r.get("texture_size"):
        con.print(f"texture: {r['texture_size']}² RGB")
    if line := _sources_line(r["inputs"], r.get("perception", [])):
        con.print(line)
    for q in r["fit_quality"]:
        iou = q.get("silhouette_iou")
        outline = f"silhouette IoU {iou:.3f}" if iou is not None else "no mask to score the silhouette"
        error = q.get("keypoint_error_pct", float("nan"))
        con.print(f"fit: {outline}, keypoint error {error:.2f} % of height")
    if r.get("kept_views"):
        con.print(f"view-dependent colour: {r['kept_views']} photos kept")
    if r.get("new_view_psnr"):
        psnr_new, ssim_new = (sum(r[k]) / len(r[k]) for k in ("new_view_psnr", "new_view_ssim"))
        con.print(_new_views_line("photo", psnr_new, ssim_new))
    if r.get("clothing"):
        before = ", ".join(f"{x:.3f}" for x in r["clothing"]["silhouette_iou_before"])
        after = ", ".join(f"{x:.3f}" for x in r["clothing"]["silhouette_iou_after"])
        con.print(f"clothing offsets: outline IoU {before} → {after}")
    for w in r["warnings"]:
        con.print(f"[yellow]warning:[/] {w}")


def _print_table(con, items) -> None:
    from rich.table import Table

    t = Table(title="avatar create")
    for col in ("input", "status", "PSNR", "SSIM", "seconds / detail"):
        t.add_column(col)
    for i in items:
        if i.result:
            t.add_row(
                Path(i.input).name, "[green]created[/]", f"{i.result['psnr'][0]:.1f}",
                f"{i.result['ssim'][0]:.3f}", f"{i.result['seconds']:.1f}",
            )  # fmt: skip
        else:
            colour = "yellow" if i.status == "skipped" else "red"
            t.add_row(Path(i.input).name, f"[{colour}]{i.status}[/]", "", "", i.detail)
    con.print(t)
