"""``avatar render``: one still of an avatar, from any view, in its input pose, at rest, or in
the pose of another photo of a person (or of a fit file from ``avatar fit``).

``--view input --pose input`` reproduces the original photo's camera and pose, so an avatar
can be compared with its source photo pixel for pixel; ``--pose other.jpg --view input`` draws
the avatar as it would stand in ``other.jpg``.
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


def pose_from_file(path: str | os.PathLike, avatar, body, progress=None):
    """The pose, translation (1, 55, 3) / (1, 3) and camera of a fit file or a photo (perceived and
    fitted now with the avatar's body). The translation is moved so the avatar's own pelvis, not
    the fitted body's, stands where the fitted one stood: another shape keeps the placement."""
    from avatarcli.fitting import FitSettings, fit_photo, load_fit

    source = Path(path)
    if not source.exists():
        raise UserError(f"--pose {source}: no such file; use input, rest, a photo or a .fit.json file")
    if source.name.lower().endswith(".json"):
        fit = load_fit(source)
        if fit.body != avatar.body_backend:
            raise UserError(
                f"{source} was fitted with the {fit.body} body; this avatar uses {avatar.body_backend}: "
                f"fit the photo again with avatar fit --body {avatar.body_backend}"
            )
    else:
        fit = fit_photo(source, body, settings=FitSettings(), progress=progress)
    device = body.skin_weights.device
    pose = torch.as_tensor(fit.pose, dtype=torch.float32, device=device)[None]
    transl = torch.as_tensor(fit.transl, dtype=torch.float32, device=device)[None]
    with torch.no_grad():
        fitted_shape = torch.as_tensor(fit.shape, dtype=torch.float32, device=device)[None]
        theirs = body.rest(fitted_shape).joints[0, 0]
        ours = body.rest(avatar.shape.to(device)[None]).joints[0, 0]
    return pose, transl + (theirs - ours), fit.camera().to(device)


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
    progress=None,
) -> Path:
    """Render one image of the avatar and write it atomically as PNG/JPEG.

    ``pose``: ``input``, ``rest``, or a photo / ``.fit.json`` file whose pose the avatar takes;
    ``view="input"`` is then that photo's camera. ``progress(stage, done, total)`` follows the
    fit of a photo."""
    device = torch.device(device)
    target = Path(output)
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{target}: write a .png or .jpg image")
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it")
    avatar, body = load_avatar_with_body(avatar_path, device)
    shape = avatar.shape.to(device)[None]
    posed_camera = None
    if pose == "input":
        v = input_view(avatar, input_index)
        body_pose, transl = v["pose"].to(device)[None], v["transl"].to(device)[None]
    elif pose == "rest":
        body_pose = torch.zeros(1, NUM_JOINTS, 3, device=device)
        transl = torch.zeros(1, 3, device=device)
    else:
        body_pose, transl, posed_camera = pose_from_file(pose, avatar, body, progress)
    with torch.no_grad():
        verts = body(shape=shape, pose=body_pose, transl=transl).vertices
        if view == "input":
            if posed_camera is not None:
                camera = posed_camera
            else:
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

    with atomic_write(target, overwrite=overwrite) as tmp:
        Image.fromarray(image).save(
            tmp, format="PNG" if target.suffix.lower() == ".png" else "JPEG", quality=95
        )
    return target
