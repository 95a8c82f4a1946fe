"""``avatar render``: one still of an avatar, from any view, in its input pose or at rest.

``--view input --pose input`` reproduces the original photo's camera and pose, so an avatar
can be compared with its source photo pixel for pixel.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avatarcli.body.joints import NUM_JOINTS
from avatarcli.errors import UserError
from avatarcli.io_utils import atomic_write
from avatarcli.media import parse_background
from avatarcli.pipelines.posing import load_avatar_with_body, make_frame_renderer, view_yaw
from avatarcli.render import Camera, framing_camera


def input_view(avatar, index: int = 0) -> dict:
    if not avatar.views:
        raise UserError(
            "this avatar has no input view stored (it was not made from a photo); use --view front"
        )
    if index >= len(avatar.views):
        raise UserError(
            f"--input-index {index} is out of range: the avatar has {len(avatar.views)} input views"
        )
    return avatar.views[index]


def render_still(
    avatar_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    view: str = "front",
    pose: str = "rest",
    size: int = 512,
    background: str | None = "white",
    input_index: int = 0,
    shade: bool = False,
    neural: bool | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Render one image of the avatar and write it atomically as PNG/JPEG."""
    device = torch.device(device)
    avatar, body = load_avatar_with_body(avatar_path, device)
    shape = avatar.shape.to(device)[None]
    if pose == "input":
        v = input_view(avatar, input_index)
        body_pose, transl = v["pose"].to(device)[None], v["transl"].to(device)[None]
    elif pose == "rest":
        body_pose = torch.zeros(1, NUM_JOINTS, 3, device=device)
        transl = torch.zeros(1, 3, device=device)
    else:
        raise UserError(f"unknown --pose {pose!r}; use input or rest")
    with torch.no_grad():
        verts = body(shape=shape, pose=body_pose, transl=transl).vertices
        if view == "input":
            v = input_view(avatar, input_index)
            camera = Camera(v["K"], v["R"], v["t"], int(v["width"]), int(v["height"])).to(device)
            out_size = (camera.width, camera.height)
        else:
            camera = framing_camera(verts, yaw_deg=view_yaw(view), size=size, fill=0.9).to(device)
            out_size = (size, size)
        draw = make_frame_renderer(
            avatar, body, device, parse_background(background, out_size), shade=shade, neural=neural
        )
        image = draw(verts, camera)[0]
    from PIL import Image

    target = Path(output)
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{target}: write a .png or .jpg image")
    with atomic_write(target, overwrite=overwrite) as tmp:
        Image.fromarray(image).save(
            tmp, format="PNG" if target.suffix.lower() == ".png" else "JPEG", quality=95
        )
    return target
