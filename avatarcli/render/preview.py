"""Preview contact sheets: labelled tiles (input, overlay, texture, front/side/back) in one PNG.

Every command that creates something writes one of these so a user can check the result at a
glance. Images may be PIL images, numpy arrays (H, W), (H, W, 3|4) in uint8 or float [0, 1],
or torch tensors (3, H, W), (1, 3, H, W) or (H, W, 3). PIL is imported lazily.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from avatarcli.io_utils import atomic_write
from avatarcli.render.camera import framing_camera
from avatarcli.render.rasterizer import rasterize
from avatarcli.render.textured import render_textured

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

LABEL_HEIGHT = 20
GAP = 4


def to_uint8_image(image: Any) -> np.ndarray:
    """Any supported image → (H, W, 3) uint8 RGB (alpha dropped, grey expanded)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4:
            t = t[0]
        if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        arr = t.float().numpy() if t.is_floating_point() else t.numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"cannot show an image of shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def overlay(image: Any, render: Any, mask: Any, alpha: float = 0.6) -> np.ndarray:
    """Blend ``render`` over ``image`` where ``mask`` is set (same size), for fit checks."""
    base = to_uint8_image(image).astype(np.float32)
    top = to_uint8_image(render).astype(np.float32)
    m = (
        mask.detach().cpu().float().numpy()
        if isinstance(mask, torch.Tensor)
        else np.asarray(mask, np.float32)
    )
    m = np.squeeze(m)
    if m.shape != base.shape[:2] or top.shape != base.shape:
        raise ValueError("overlay: image, render and mask must have the same height and width")
    w = (alpha * np.clip(m, 0, 1))[..., None]
    return (base * (1 - w) + top * w + 0.5).astype(np.uint8)


def _fit(img: Image.Image, size: int, fill: tuple[int, int, int]) -> Image.Image:
    from PIL import Image

    scale = size / max(img.size)
    resized = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
    )
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return canvas


def make_contact_sheet(
    tiles: Sequence[tuple[str, Any]],
    *,
    tile_size: int = 256,
    columns: int | None = None,
    background: tuple[int, int, int] = (24, 24, 24),
) -> Image.Image:
    """Lay labelled tiles out on a grid (letterboxed to ``tile_size``) and return the PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    cols = columns or min(len(tiles), 4)
    rows = math.ceil(len(tiles) / cols)
    cell_h = tile_size + LABEL_HEIGHT
    sheet = Image.new(
        "RGB", (cols * tile_size + (cols + 1) * GAP, rows * cell_h + (rows + 1) * GAP), background
    )
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for k, (label, image) in enumerate(tiles):
        r, c = divmod(k, cols)
        x, y = GAP + c * (tile_size + GAP), GAP + r * (cell_h + GAP)
        tile = _fit(Image.fromarray(to_uint8_image(image)), tile_size, background)
        sheet.paste(tile, (x, y + LABEL_HEIGHT))
        draw.text((x + 3, y + 2), str(label), fill=(235, 235, 235), font=font)
    return sheet


def save_contact_sheet(
    path: str | os.PathLike,
    tiles: Sequence[tuple[str, Any]],
    *,
    tile_size: int = 256,
    columns: int | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a contact sheet PNG atomically; returns the path."""
    sheet = make_contact_sheet(tiles, tile_size=tile_size, columns=columns)
    with atomic_write(path, overwrite=overwrite) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


VIEW_YAWS = {"front": 0.0, "side": 90.0, "back": 180.0}


def orbit_views(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor | None = None,
    uv_faces: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    *,
    views: dict[str, float] | None = None,
    size: int = 256,
    background: float = 1.0,
) -> list[tuple[str, torch.Tensor]]:
    """Shaded renders (3, H, W) of one posed body (V, 3) from named yaws, framed to fit.

    Without a texture the body is drawn in flat grey with camera-light shading.
    """
    views = views or VIEW_YAWS
    verts = vertices.detach().reshape(1, -1, 3)
    names = list(views)
    camera = framing_camera(verts[0], [views[n] for n in names], size)
    batch = len(names)
    verts_b = verts.expand(batch, -1, -1)
    if texture is None or uv is None or uv_faces is None:
        uv = torch.zeros(1, 2, device=verts.device)
        uv_faces = torch.zeros_like(faces)
        texture = torch.full((1, 3, 2, 2), 0.7, device=verts.device)
    with torch.no_grad():
        frags = rasterize(verts_b, faces, camera, cull_backfaces=True)
        image, _ = render_textured(
            verts_b,
            faces,
            uv,
            uv_faces,
            texture.float(),
            camera,
            background=background,
            shade=True,
            fragments=frags,
        )
    return [(name, image[k]) for k, name in enumerate(names)]
