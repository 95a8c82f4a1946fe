"""Loading the shared upstream test vectors (../shared/reference/vectors), skipping when absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vectors"


def load_vector(name: str) -> tuple[dict, dict, dict, dict]:
    """``(state_dict, inputs, outputs, sidecar)`` of vector ``name``; skips the test without it."""
    from safetensors.torch import load_file

    path = VECTORS / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"shared test vector {path} is not available")
    tensors = load_file(str(path))

    def pick(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    meta = json.loads((VECTORS / f"{name}.json").read_text())
    return pick("state_dict/"), pick("input/"), pick("output/"), meta
