"""Perception: a photo → the person's 2D keypoints (canonical BODY_25 set + hands + face) and mask."""

from __future__ import annotations

from avatarcli.perception.keypoints import BODY_KEYPOINT_NAMES, HAND_KEYPOINT_NAMES
from avatarcli.perception.perceive import Perception, perceive

__all__ = ["BODY_KEYPOINT_NAMES", "HAND_KEYPOINT_NAMES", "Perception", "perceive"]
