"""Shared test helper: an avatar wearing the synthetic outfit, made without photos or fitting."""

from __future__ import annotations

import torch

from avatarcli.avatar_file import Avatar
from avatarcli.pipelines.synthetic import outfit_texture


def outfit_avatar(body, texture_size: int = 128, **fields) -> Avatar:
    """The outfit texture on ``body`` at rest shape; ``fields`` override any :class:`Avatar` field
    (shape, clothing_offsets, extra textures...)."""
    texture = (outfit_texture(body, texture_size).permute(1, 2, 0) * 255).round().to(torch.uint8)
    made = {
        "body_backend": body.name,
        "body_model_id": body.model_id,
        "shape": torch.zeros(body.num_shape),
        "uv_layout": body.name,
        "textures": {"rgb": texture},
    }
    extra_textures = fields.pop("textures", {})
    made.update(fields)
    made["textures"] = {**made["textures"], **extra_textures}
    return Avatar(**made)
