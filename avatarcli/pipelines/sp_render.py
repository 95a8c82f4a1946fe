"""Drawing StylePeople avatars: posed body → uv render → StylePeople renderer → frames.

A StylePeople avatar stores its 16-channel neural texture as ``textures["neural"]`` and names
the shared renderer it was made for in ``weights["stylepeople_renderer"]`` (sha256). The
renderer doubles the resolution of the uv render (StylePeople renders uv at 512² for 1024²
images), so frames of size S are rasterised at S/2, rounded to the renderer's multiple of 32.
uv is fed as ``2·uv − 1`` on the body and −10 off it, the convention of the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avatarcli.errors import AvatarFormatError

RENDERER_WEIGHTS = "stylepeople_renderer"
GENERATOR_WEIGHTS = "stylepeople_generator"


def uv_input(body, vertices: torch.Tensor, camera) -> torch.Tensor:
    """StylePeople's renderer input: uv (B, 2, H, W) as ``2·uv − 1`` on the body, −10 off it."""
    from avatarcli.render import rasterize, render_uv

    frags = rasterize(vertices, body.faces, camera, cull_backfaces=True)
    uv = render_uv(frags, body.uv, body.uv_faces)  # (B, H, W, 2) in [0, 1]
    uv = torch.where(frags.mask[..., None], uv * 2 - 1, torch.full_like(uv, -10.0))
    return uv.permute(0, 3, 1, 2).contiguous()


@dataclass
class SPFrameRenderer:
    """Callable (vertices (B, V, 3), camera) → (B, H, W, 3) uint8 through the StylePeople renderer."""

    body: object
    texture: torch.Tensor  # (1, 16, T, T) float32
    renderer: torch.nn.Module
    background: tuple[float, float, float] | torch.Tensor

    @classmethod
    def for_avatar(cls, avatar, body, device: torch.device, background, renderer=None) -> SPFrameRenderer:
        if "neural" not in avatar.textures:
            raise AvatarFormatError("this StylePeople avatar has no neural texture; recreate it")
        if renderer is None:
            from avatarcli.nets.sp_checkpoint import load_renderer
            from avatarcli.pipelines.neural_render import check_same_weights
            from avatarcli.weights_registry import require_weights

            path = require_weights([RENDERER_WEIGHTS])[RENDERER_WEIGHTS]
            check_same_weights(avatar, RENDERER_WEIGHTS)
            renderer = load_renderer(path, device)
        texture = avatar.textures["neural"].to(device=device, dtype=torch.float32)[None]
        return cls(body, texture, renderer.eval(), background)

    def render(self, vertices: torch.Tensor, camera) -> torch.Tensor:
        """RGB in [0, 1], (B, 3, H, W) at the camera's size."""
        size = (camera.height, camera.width)
        # rasterise at half size on a canvas grown to the renderer's multiple of 32 (extra rows and
        # columns at the bottom/right), then crop the doubled output back to exactly 2× half size
        cam = camera.scale(0.5)
        padded = [max(32, -(-n // 32) * 32) for n in (cam.height, cam.width)]
        canvas = type(cam)(cam.K, cam.R, cam.t, padded[1], padded[0])
        uv = uv_input(self.body, vertices, canvas)
        with torch.no_grad():
            out = self.renderer.render_texture(self.texture.expand(len(vertices), -1, -1, -1), uv)
        rgb = (out.rgb + 1)[..., : 2 * cam.height, : 2 * cam.width] / 2
        alpha = out.segm[..., : 2 * cam.height, : 2 * cam.width]
        if tuple(rgb.shape[-2:]) != size:
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
            alpha = F.interpolate(alpha, size=size, mode="bilinear", align_corners=False)
        bg = self.background
        if not isinstance(bg, torch.Tensor):
            bg = torch.tensor(bg, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        # the renderer composites on black; put the person over the requested background
        return (rgb + bg.to(rgb) * (1 - alpha)).clamp(0, 1)

    def __call__(self, vertices: torch.Tensor, camera) -> np.ndarray:
        image = self.render(vertices, camera)
        return (image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
