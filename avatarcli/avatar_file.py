"""The avatar file (``.pt``): one self-describing bundle per person.

Layout — a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)`` and never runs code from the file::

    format: "avatarcli-avatar"          format_version: 1 | 2    tool_version: "0.1.0"
    body:       {backend, model_id, shape (S,) float32, clothing_offsets (V, 3) float32 [v2]}
    uv_layout:  "anny" | "smplx" | "dinar" …   texture_size: int
    textures:   {rgb (H,W,3) uint8, known (H,W) uint8 [B_smp], filled (H,W) uint8,
                 neural (C,H,W) float16 (optional), …}
    renderer:   per-person neural renderer state dict (optional)
    weights:    {name: sha256} of shared neural weights the avatar was made with (optional)
    views:      list of input views: {image_name, pose (55,3), transl (3,), K, R, t, width, height}
    provenance: {method, seed, inputs: [{name, sha256}], params: {...}, created}

Loading an avatar made for another body backend or UV layout fails with a clear message.
Version 2 adds the optional clothing offsets (:class:`avatarcli.body.clothed.ClothedBody`); only
avatars that carry them are written as version 2, so everything else still opens in older
releases, and an older release refuses a clothed avatar instead of drawing it without clothes.
"""

from __future__ import annotations

import datetime as _dt
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avatarcli._version import __version__
from avatarcli.errors import AvatarFormatError
from avatarcli.io_utils import atomic_write

FORMAT_NAME = "avatarcli-avatar"
#: the newest format this release reads and writes
FORMAT_VERSION = 2


def rgb_for_file(texture: torch.Tensor) -> torch.Tensor:
    """A colour texture (3, T, T) in [0, 1] as the file stores it: (T, T, 3) uint8 on the CPU."""
    return (texture.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().contiguous()


@dataclass
class Avatar:
    """An avatar in memory. Tensors live on the CPU; stages move what they need."""

    body_backend: str
    body_model_id: str
    shape: torch.Tensor
    uv_layout: str
    textures: dict[str, torch.Tensor]
    views: list[dict[str, Any]] = field(default_factory=list)
    renderer: dict[str, torch.Tensor] | None = None
    weights: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: rest-frame per-vertex offsets (V, 3) in metres of the clothed body, or None (plain body)
    clothing_offsets: torch.Tensor | None = None

    @property
    def texture_size(self) -> int:
        rgb = self.textures.get("rgb")
        return int(rgb.shape[0]) if rgb is not None else int(next(iter(self.textures.values())).shape[-1])

    @property
    def has_neural_texture(self) -> bool:
        return "neural" in self.textures

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "backend": self.body_backend,
            "model_id": self.body_model_id,
            "shape": self.shape.detach().cpu().float(),
        }
        if self.clothing_offsets is not None:
            body["clothing_offsets"] = self.clothing_offsets.detach().cpu().float()
        return {
            "format": FORMAT_NAME,
            "format_version": 2 if self.clothing_offsets is not None else 1,
            "tool_version": __version__,
            "body": body,
            "uv_layout": self.uv_layout,
            "texture_size": self.texture_size,
            "textures": {k: v.detach().cpu() for k, v in self.textures.items()},
            "renderer": self.renderer,
            "weights": dict(self.weights),
            "views": list(self.views),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "avatar") -> Avatar:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise AvatarFormatError(f"{source} is not an avatarcli avatar file")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise AvatarFormatError(
                f"{source} has avatar format version {version}; this avatarcli ({__version__}) "
                f"reads up to {FORMAT_VERSION}: upgrade avatarcli"
            )
        try:
            body = data["body"]
            return cls(
                body_backend=str(body["backend"]),
                body_model_id=str(body["model_id"]),
                shape=body["shape"],
                uv_layout=str(data["uv_layout"]),
                textures=dict(data["textures"]),
                views=list(data.get("views") or []),
                renderer=data.get("renderer"),
                weights=dict(data.get("weights") or {}),
                provenance=dict(data.get("provenance") or {}),
                clothing_offsets=_offsets(body.get("clothing_offsets"), source),
            )
        except (KeyError, TypeError) as exc:
            raise AvatarFormatError(f"{source} is missing avatar field {exc}; the file is damaged") from exc


def _offsets(value: Any, source: str) -> torch.Tensor | None:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[1] != 3:
        raise AvatarFormatError(f"{source} has malformed clothing offsets; the file is damaged")
    if not bool(torch.isfinite(value).all()):
        raise AvatarFormatError(f"{source} has non-finite clothing offsets; the file is damaged")
    return value.float()


def save_avatar(avatar: Avatar, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``avatar`` atomically (temp file + rename), refusing to clobber unless asked."""
    data = avatar.to_dict()
    data["provenance"].setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    target = Path(path)
    with atomic_write(target, overwrite=overwrite) as tmp:
        torch.save(data, tmp)
    return target


def load_avatar(
    path: str | os.PathLike,
    *,
    expect_backend: str | None = None,
    expect_model_id: str | None = None,
    expect_uv_layout: str | None = None,
) -> Avatar:
    """Read an avatar file safely (``weights_only=True``) and check it fits the caller's body."""
    p = Path(path)
    if not p.is_file():
        raise AvatarFormatError(f"avatar file {p} does not exist")
    if not zipfile.is_zipfile(p):  # every torch.save since 1.6 writes a zip archive
        raise AvatarFormatError(f"{p} is not a readable avatar file (corrupt, truncated or another format)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors, or weights_only refusing a foreign object
        text = str(exc).strip()
        if "Weights only load failed" in text:
            raise AvatarFormatError(
                f"{p} holds Python objects other than tensors; refusing to load it (not an avatar file)"
            ) from exc
        first = text.splitlines()[0] if text else type(exc).__name__
        raise AvatarFormatError(f"{p} is not a readable avatar file (corrupt or truncated: {first})") from exc
    avatar = Avatar.from_dict(data, source=str(p))
    if expect_backend and avatar.body_backend != expect_backend:
        raise AvatarFormatError(
            f"{p} was made for the {avatar.body_backend!r} body, not {expect_backend!r}; "
            f"use --body {avatar.body_backend} or recreate the avatar"
        )
    if expect_model_id and avatar.body_model_id != expect_model_id:
        raise AvatarFormatError(
            f"{p} was made with body model {avatar.body_model_id}, this one is {expect_model_id}; "
            "recreate the avatar with this body model"
        )
    if expect_uv_layout and avatar.uv_layout != expect_uv_layout:
        raise AvatarFormatError(
            f"{p} uses the {avatar.uv_layout!r} UV layout, expected {expect_uv_layout!r}; recreate the avatar"
        )
    return avatar
