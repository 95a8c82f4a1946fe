"""Process-wide runtime choices: device, seed, verbosity, cache folder.

Kept free of heavy imports at module level so ``avatar --help`` stays instant.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from avatarcli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def cache_dir() -> Path:
    """Where derived data (built body models, perception results) is cached.

    ``AVATAR_CACHE`` moves it; the default follows XDG (``~/.cache/avatarcli``).
    """
    env = os.environ.get("AVATAR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "avatarcli"


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:i]`` to a torch device; ``auto`` prefers CUDA when present."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so runs with the same ``--seed`` repeat exactly."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
