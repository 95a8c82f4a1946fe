"""The core of ``avatar sample``: new random people as StylePeople neural textures.

Each texture comes from its own seed, ``seed + i``, which fixes both its latent z and its
per-layer noise maps. So ``-n 8 --seed s`` yields exactly the textures of eight runs of
``-n 1 --seed s+i``, and adding samples never changes the earlier ones. All random numbers are
drawn on the CPU, so a seed gives the same person on CPU and CUDA (up to float rounding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from avatarcli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from avatarcli.nets.sp_generator import SPTextureGenerator


def draw_sample_inputs(generator: SPTextureGenerator, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The latent z (1, style_dim) and noise maps (1,1,r,r) that sample ``seed`` uses, on the CPU.

    z is drawn first, then the noise maps from coarse to fine, all from one CPU generator.
    """
    import torch

    cpu = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, generator.config.style_dim, generator=cpu)
    noise = generator.make_noise(1, generator=cpu, device="cpu", dtype=torch.float32)
    return z, noise


def sample_textures(
    generator: SPTextureGenerator,
    n: int,
    seed: int,
    truncation: float = 0.7,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """``n`` neural textures (16, S, S) on the CPU, sample ``i`` drawn from seed ``seed + i``.

    ``truncation`` pulls each w toward the generator's mean latent (1 = no truncation, 0 = the
    mean person, whose texture then differs between samples only through the noise maps).
    """
    import torch

    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if truncation < 0:
        raise UserError(f"--truncation must be ≥ 0 (1 = none, 0 = the average person), got {truncation}")
    device = torch.device(device)
    generator = generator.to(device).eval()
    textures = []
    with torch.no_grad():
        for i in range(n):
            z, noise = draw_sample_inputs(generator, seed + i)
            texture = generator(
                z.to(device), [m.to(device) for m in noise], truncation=truncation, noise_mode="random"
            )
            textures.append(texture[0].float().cpu())
    return textures


def sample_avatars(
    n: int,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    truncation: float = 0.7,
    body_name: str = "anny",
    smplx_dir: str | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    weights_folder: Path | None = None,
) -> list[dict]:
    import torch

    """``avatar sample``: ``n`` random StylePeople avatars, each an avatar file + preview PNG.

    Sample ``i`` uses seed ``seed + i``, so ``-n 8 --seed 0`` and ``-n 1 --seed 5`` agree on
    sample 5. Needs the ``stylepeople_generator`` and ``stylepeople_renderer`` weights.
    """
    from avatarcli.avatar_file import Avatar, save_avatar
    from avatarcli.body import load_body
    from avatarcli.nets.sp_checkpoint import load_generator, load_renderer
    from avatarcli.pipelines.neural_render import manifest_sha256
    from avatarcli.pipelines.sp_render import GENERATOR_WEIGHTS, RENDERER_WEIGHTS, SPFrameRenderer
    from avatarcli.render import framing_camera
    from avatarcli.render.preview import save_contact_sheet
    from avatarcli.weights_registry import require_weights

    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    paths = require_weights([GENERATOR_WEIGHTS, RENDERER_WEIGHTS], weights_folder)
    out = Path(out_dir)
    targets = [out / f"sample_{seed + i:05d}.pt" for i in range(n)]
    for t in targets:
        if t.exists() and not overwrite:
            raise UserError(f"{t} already exists; pass --overwrite to replace it")
    device = torch.device(device)
    generator = load_generator(paths[GENERATOR_WEIGHTS], device)
    renderer = load_renderer(paths[RENDERER_WEIGHTS], device)
    body = load_body(body_name, model_dir=smplx_dir).to(device)
    names = (GENERATOR_WEIGHTS, RENDERER_WEIGHTS)
    shas = {name: manifest_sha256(name, weights_folder) or "" for name in names}
    textures = sample_textures(generator, n, seed, truncation=truncation, device=device)
    rest = body.rest().vertices
    cams = framing_camera(rest, yaw_deg=[0.0, 90.0, 180.0], size=256)
    results = []
    for i, (texture, target) in enumerate(zip(textures, targets, strict=True)):
        avatar = Avatar(
            body_backend=body.name,
            body_model_id=body.model_id,
            shape=torch.zeros(body.num_shape),
            uv_layout=body.name,
            textures={"neural": texture.half()},
            weights=shas,
            provenance={"method": "stylepeople-sample", "seed": seed + i, "truncation": truncation},
        )
        save_avatar(avatar, target, overwrite=overwrite)
        draw = SPFrameRenderer.for_avatar(avatar, body, device, (1.0, 1.0, 1.0), renderer=renderer)
        frames = draw(rest.expand(3, -1, -1), cams.to(device))
        preview = target.with_name(target.stem + "_preview.png")
        tiles = [("neural texture (ch 0-2)", _texture_preview(texture))]
        tiles += [(name, frame) for name, frame in zip(("front", "side", "back"), frames, strict=True)]
        save_contact_sheet(preview, tiles, tile_size=256, columns=4)
        results.append({"avatar": str(target), "preview": str(preview), "seed": seed + i})
        if progress:
            progress(i + 1, n)
    return results


def _texture_preview(texture: torch.Tensor) -> torch.Tensor:
    """First three neural channels, each stretched to [0, 1], as a picture of the texture."""
    rgb = texture[:3].float()
    lo = rgb.amin(dim=(1, 2), keepdim=True)
    hi = rgb.amax(dim=(1, 2), keepdim=True)
    return (rgb - lo) / (hi - lo).clamp_min(1e-6)
