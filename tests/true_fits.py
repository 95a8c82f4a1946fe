"""Shared test helper: the exact 'fits' of synthetic photos, as the video pipeline holds them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from avatarcli.pipelines.synthetic import SyntheticPerson
from avatarcli.pipelines.video_avatar import FittedFrames


def true_fits(people: Sequence[SyntheticPerson], names: Sequence[str]) -> FittedFrames:
    """Frames whose poses, cameras and masks are the ones the photos were rendered with."""
    height, width = people[0].mask.shape
    return FittedFrames(
        names=list(names),
        shape=people[0].shape[None],
        poses=torch.stack([p.pose for p in people]),
        transl=torch.zeros(len(people), 3),
        cameras=[p.camera for p in people],
        photos=[torch.from_numpy(p.image).permute(2, 0, 1)[None].float() / 255.0 for p in people],
        masks=[torch.from_numpy(p.mask)[None].float() / 255.0 for p in people],
        source_sizes=[(width, height)] * len(people),
    )
