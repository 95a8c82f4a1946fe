"""Shared by the commands that render an existing avatar: load it with its body, and draw frames.

:class:`FrameRenderer` is the hook between "a posed body + cameras" and "pixels": the RGB
path samples the avatar's colour texture; avatars that carry a neural texture are drawn by a
neural renderer when its weights are installed (see :func:`make_frame_renderer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from avatarcli.avatar_file import Avatar, load_avatar
from avatarcli.body import BodyModel, load_body
from avatarcli.errors import AvatarFormatError
from avatarcli.render import Camera

if TYPE_CHECKING:
    from avatarcli.texture.view_dependent import ViewColour


def load_avatar_with_body(
    path: str | os.PathLike, device: torch.device, smplx_dir: str | None = None
) -> tuple[Avatar, BodyModel]:
    """Read an avatar and build the body it was made for, refusing mismatched body models.

    An avatar with clothing offsets gets its :class:`~avatarcli.body.clothed.ClothedBody`, so
    every pose drawn from it wears the fitted clothes.
    """
    avatar = load_avatar(path)
    body = load_body(avatar.body_backend, model_dir=smplx_dir)
    if body.model_id != avatar.body_model_id:
        raise AvatarFormatError(
            f"{path} was made with body model {avatar.body_model_id}; this installation has "
            f"{body.model_id}. Recreate the avatar (avatar create) with this version"
        )
    if avatar.clothing_offsets is not None:
        from avatarcli.body.clothed import ClothedBody

        if tuple(avatar.clothing_offsets.shape) != (body.num_vertices, 3):
            raise AvatarFormatError(
                f"{path} has clothing offsets for {avatar.clothing_offsets.shape[0]} vertices; the "
                f"{body.name} body has {body.num_vertices}. Recreate the avatar with this version"
            )
        body = ClothedBody(body, avatar.clothing_offsets)
    return avatar, body.to(device)


class FrameRenderer(Protocol):
    """Draws posed bodies: (B, V, 3) vertices + cameras → (B, H, W, 3) uint8 frames."""

    def __call__(self, vertices: torch.Tensor, camera: Camera) -> np.ndarray: ...


@dataclass
class RGBFrameRenderer:
    """The default path: the avatar's colour texture on the posed mesh (no neural weights).

    ``uv``/``uv_faces``: the avatar's UV layout when it is not the body's own (e.g. DINAR's).
    ``view``: the avatar's kept photos (:mod:`avatarcli.texture.view_dependent`); each frame
    then draws the body from the photos taken from the nearest directions relative to the torso.
    """

    body: BodyModel
    texture: torch.Tensor  # (1, 3, T, T) float [0, 1]
    background: tuple[float, float, float] | torch.Tensor
    shade: bool = False
    uv: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None
    view: ViewColour | None = None

    def __call__(self, vertices: torch.Tensor, camera: Camera) -> np.ndarray:
        from avatarcli.render import render_textured

        batch = vertices.shape[0]
        own = self.uv is None or self.uv_faces is None
        uv = self.body.uv if own else self.uv.to(vertices.device)
        uv_faces = self.body.uv_faces if own else self.uv_faces.to(vertices.device)
        options = dict(background=self.background, shade=self.shade)
        if self.view is not None:
            image, _ = self.view.render(vertices, camera, self.texture, uv, uv_faces, **options)
        else:
            texture = self.texture.expand(batch, -1, -1, -1)
            image, _ = render_textured(vertices, self.body.faces, uv, uv_faces, texture, camera, **options)
        return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def avatar_view_colour(avatar: Avatar, body: BodyModel, device: torch.device):
    """The avatar's view-dependent colour (:class:`avatarcli.texture.view_dependent.ViewColour`),
    or None when it was made without kept photos."""
    from avatarcli.texture.view_dependent import ViewColour, from_avatar_textures, torso_vertex_ids

    try:
        views = from_avatar_textures(avatar.textures, body.num_vertices)
    except ValueError as exc:
        raise AvatarFormatError(str(exc)) from None
    if views is None:
        return None
    with torch.no_grad():
        rest = body.rest(avatar.shape.to(device).reshape(1, -1)).vertices[0]
    return ViewColour(views.to(device), body.faces.to(device), rest, torso_vertex_ids(body).to(device))


def avatar_rgb_texture(avatar: Avatar, device: torch.device) -> torch.Tensor:
    """The avatar's colour texture as (1, 3, T, T) floats in [0, 1]."""
    rgb = avatar.textures.get("rgb")
    if rgb is None:
        raise AvatarFormatError("the avatar has no colour texture ('rgb'); recreate it with avatar create")
    return (rgb.to(device=device, dtype=torch.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def background_tensor(
    background: tuple[float, float, float] | np.ndarray, device: torch.device
) -> tuple[float, float, float] | torch.Tensor:
    if isinstance(background, np.ndarray):
        return torch.from_numpy(background).permute(2, 0, 1)[None].to(device)
    return background


def make_frame_renderer(
    avatar: Avatar,
    body: BodyModel,
    device: torch.device,
    background: tuple[float, float, float] | np.ndarray,
    *,
    shade: bool = False,
    neural: bool | None = None,
) -> FrameRenderer:
    """Pick how to draw this avatar: its own trained renderer, the StylePeople or DINAR renderer
    when it has a neural texture (and the weights are installed), else the RGB texture.

    ``neural=None`` means "neural if possible"; ``True`` insists (missing weights → clear
    error); ``False`` forces the RGB path.
    """
    bg = background_tensor(background, device)
    if neural is not False and isinstance(avatar.renderer, dict) and "kind" in avatar.renderer:
        from avatarcli.pipelines.video_avatar import frame_renderer_for  # per-person trained renderer

        return frame_renderer_for(avatar, body, device, bg)
    if neural is not False and "stylepeople_renderer" in avatar.weights:
        from avatarcli.pipelines.sp_render import SPFrameRenderer

        return SPFrameRenderer.for_avatar(avatar, body, device, bg)
    if neural is not False and avatar.has_neural_texture:
        from avatarcli.pipelines.neural_render import NeuralFrameRenderer, neural_renderer_available

        if neural or neural_renderer_available(avatar):
            return NeuralFrameRenderer.for_avatar(avatar, body, device, bg)
    texture = avatar_rgb_texture(avatar, device)
    view = avatar_view_colour(avatar, body, device)
    if avatar.uv_layout == body.name:
        return RGBFrameRenderer(body, texture, bg, shade, view=view)
    from avatarcli.pipelines.neural_render import avatar_uv_layout

    layout = avatar_uv_layout(avatar, body)  # DINAR's layout: embedded or the installed weights
    return RGBFrameRenderer(body, texture, bg, shade, layout.uv, layout.uv_faces, view=view)


def view_yaw(view: str) -> float:
    """``front``/``side``/``back``/``left``/``right`` or a number of degrees → camera yaw."""
    named = {"front": 0.0, "side": 90.0, "left": 90.0, "back": 180.0, "right": 270.0}
    key = view.strip().lower()
    if key in named:
        return named[key]
    try:
        return float(key.rstrip("°").removesuffix("deg"))
    except ValueError:
        from avatarcli.errors import UserError

        raise UserError(
            f"unknown view {view!r}; use front, side, back, left, right or a yaw in degrees"
        ) from None
