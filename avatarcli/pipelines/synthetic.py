"""Synthetic people: a procedural outfit texture on the body, rendered as a "photo".

Third-party photos may not ship in the repository, so the bundled example
(``examples/person.png``) and many tests use a person we make ourselves: the anny body in a
relaxed pose, wearing a procedurally coloured outfit (hair, skin, striped shirt with a chest
badge, trousers, shoes), shaded and rendered over a soft backdrop. Because we know the true
texture, pose and camera, tests can measure how well avatars reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS
from avatarcli.body.parts import PART_NAMES
from avatarcli.body.protocol import BodyModel
from avatarcli.render import Camera, framing_camera, render_textured, texel_geometry

SKIN = (0.87, 0.68, 0.55)
HAIR = (0.23, 0.15, 0.10)
SHIRT = (0.12, 0.52, 0.56)
STRIPE = (0.93, 0.91, 0.84)
TROUSERS = (0.16, 0.20, 0.36)
SHOES = (0.30, 0.18, 0.10)
BADGE = (0.95, 0.75, 0.15)


@dataclass
class SyntheticPerson:
    """A rendered synthetic photo with its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 {0, 255}
    texture: torch.Tensor  # (3, T, T) float [0, 1], the true outfit
    pose: torch.Tensor  # (55, 3)
    shape: torch.Tensor  # (num_shape,)
    camera: Camera


def outfit_texture(body: BodyModel, size: int = 256, seed: int = 0) -> torch.Tensor:
    """Procedural outfit (3, size, size) in the body's UV layout, decided per texel in 3D."""
    rest = body.rest().vertices
    geo = texel_geometry(rest, body.faces, body.uv, body.uv_faces, size)
    pos = geo.position[0]
    face = geo.face_index.clamp_min(0)
    part = body.part_ids[face]
    names = {n: i for i, n in enumerate(PART_NAMES)}
    x, y, z = pos.unbind(-1)
    joints = body.rest_joints
    neck_y = float(joints[JOINT_INDEX["neck"], 1])
    head = joints[JOINT_INDEX["head"]]
    elbow_l = joints[JOINT_INDEX["left_elbow"]]

    colour = torch.empty(size, size, 3)
    colour[:] = torch.tensor(SKIN)
    torso = part == names["torso"]
    upper_arm = (part == names["left_upper_arm"]) | (part == names["right_upper_arm"])
    lower_arm = (part == names["left_lower_arm"]) | (part == names["right_lower_arm"])
    sleeve = lower_arm & ((x.abs() - abs(float(elbow_l[0]))) < 0.06)
    shirt = (torso & (y < neck_y - 0.02)) | upper_arm | sleeve
    stripes = torch.sin(y * 55.0) > 0.55
    colour[shirt] = torch.tensor(SHIRT)
    colour[shirt & stripes] = torch.tensor(STRIPE)
    badge = torso & ((x - 0.07) ** 2 + (y - (neck_y - 0.16)) ** 2 < 0.035**2) & (z > 0)
    colour[badge] = torch.tensor(BADGE)
    legs = torch.zeros_like(torso)
    for n in ("left_upper_leg", "right_upper_leg", "left_lower_leg", "right_lower_leg"):
        legs |= part == names[n]
    hips = torso & (y < float(joints[JOINT_INDEX["pelvis"], 1]) + 0.04)
    colour[legs | hips] = torch.tensor(TROUSERS)
    feet = (part == names["left_foot"]) | (part == names["right_foot"])
    colour[feet] = torch.tensor(SHOES)
    is_head = part == names["head"]
    hair = is_head & ((y > float(head[1]) + 0.07) | ((z < float(head[2]) - 0.01) & (y > neck_y + 0.04)))
    colour[hair] = torch.tensor(HAIR)
    # eyes and mouth so the face has features the front/back can be told apart by
    for side in (-1.0, 1.0):
        eye = is_head & (((x - side * 0.032) ** 2 + (y - float(head[1]) - 0.045) ** 2) < 0.009**2) & (z > 0)
        colour[eye] = torch.tensor((0.1, 0.1, 0.12))
    mouth = is_head & ((x.abs() < 0.02) & ((y - float(head[1]) + 0.005).abs() < 0.004) & (z > 0))
    colour[mouth] = torch.tensor((0.6, 0.25, 0.25))
    g = torch.Generator().manual_seed(seed)
    colour = colour * (1 + 0.04 * torch.randn(size, size, 1, generator=g))
    colour[~geo.mask] = 0.0
    from avatarcli.texture.occlusion import pad_texture_islands

    # grow islands into the gutter so bilinear lookups at UV seams never blend in black
    return pad_texture_islands(colour.clamp(0, 1).permute(2, 0, 1), geo.mask, 4).contiguous()


def relaxed_pose() -> torch.Tensor:
    """A natural standing pose on top of the rest pose (arms a little in, elbows a little bent)."""
    pose = torch.zeros(NUM_JOINTS, 3)
    pose[JOINT_INDEX["left_shoulder"], 2] = -0.12
    pose[JOINT_INDEX["right_shoulder"], 2] = 0.12
    pose[JOINT_INDEX["left_elbow"], 1] = 0.25
    pose[JOINT_INDEX["right_elbow"], 1] = -0.25
    pose[JOINT_INDEX["left_hip"], 2] = 0.04
    pose[JOINT_INDEX["right_hip"], 2] = -0.04
    pose[JOINT_INDEX["head"], 0] = 0.05
    return pose


def backdrop(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A studio-like backdrop (3, H, W): vertical gradient, a floor band, faint grain."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, height)[:, None].expand(height, width)
    top, bottom = torch.tensor([0.80, 0.83, 0.86]), torch.tensor([0.62, 0.63, 0.66])
    img = top[:, None, None] * (1 - t) + bottom[:, None, None] * t
    floor = (t > 0.86).float() * 0.06
    return (img - floor + 0.01 * torch.randn(3, height, width, generator=g)).clamp(0, 1)


def synthetic_person(
    body: BodyModel,
    *,
    size: tuple[int, int] = (512, 768),
    texture_size: int = 256,
    yaw_deg: float = 0.0,
    pose: torch.Tensor | None = None,
    shape: torch.Tensor | None = None,
    seed: int = 0,
) -> SyntheticPerson:
    """Render the synthetic person from ``yaw_deg`` (0 = front) at ``size`` = (width, height)."""
    texture = outfit_texture(body, texture_size, seed)
    pose = relaxed_pose() if pose is None else pose
    shape = torch.zeros(body.num_shape) if shape is None else shape
    out = body(shape=shape[None], pose=pose[None])
    camera = framing_camera(out.vertices, yaw_deg=yaw_deg, size=size, fill=0.82, fov_deg=30.0)
    width, height = size
    bg = backdrop(height, width, seed)[None]
    image, mask = render_textured(
        out.vertices, body.faces, body.uv, body.uv_faces, texture[None], camera, background=bg, shade=True,
        ambient=0.55,
    )  # fmt: skip
    img = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    m = (mask[0, 0] > 0.5).to(torch.uint8).numpy() * 255
    return SyntheticPerson(img, m, texture, pose, shape, camera)
