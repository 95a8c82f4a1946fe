"""``avatar weights import lpips VGG16.pth LIN.pth``: two files the user has → ``lpips_vgg.safetensors``.

LPIPS-VGG needs torchvision's ImageNet VGG16 (``vgg16-397923af.pth``) and the ``lpips`` package's
linear layers (``lpips/weights/v0.1/vgg.pth``). Both are read with ``torch.load(weights_only=True)``
(nothing in them can run), every expected key and shape is checked with a one-line error naming
the file, and only then is our network file written, atomically, with its manifest entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarcli.errors import InputFileError
from avatarcli.weights_registry.registry import WeightEntry, update_manifest, weights_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

LPIPS_NAME = "lpips_vgg"
LPIPS_LICENCE = (
    "BSD-2-Clause (lpips linear layers, Zhang et al.); VGG16 ImageNet weights as distributed by "
    "torchvision (BSD-3-Clause code; the weights follow the terms of their source, Simonyan & "
    "Zisserman / ImageNet: check them for commercial use)"
)


@dataclass
class LPIPSImport:
    entries: list[WeightEntry]
    path: Path
    notes: list[str] = field(default_factory=list)


def _tensors(obj: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(obj, Mapping) or not obj:
        raise InputFileError(f"{path} is not {what}: it holds a {type(obj).__name__}, not a state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputFileError(f"{path} is not {what}: it holds entries that are not named tensors")
    return {k: v.float() for k, v in obj.items()}


def _check(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: Path, what: str
) -> None:
    """One line naming the first problem (and how many there are) when ``found`` lacks a key or a shape."""
    problems = []
    for key, ref in expected.items():
        if key not in found:
            problems.append(f"no {key!r}")
        elif tuple(found[key].shape) != tuple(ref.shape):
            problems.append(f"{key!r} is {tuple(found[key].shape)}, expected {tuple(ref.shape)}")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InputFileError(f"{path} is not {what}: {problems[0]}{more}")


def import_lpips(
    vgg_path: str | os.PathLike,
    lin_path: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    *,
    update: bool = True,
) -> LPIPSImport:
    """Check both files, then write ``<folder>/lpips_vgg.safetensors`` (+ its manifest entry)."""
    from avatarcli._version import __version__
    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import write_network_file
    from avatarcli.nets.lpips import LPIPS, LPIPSConfig
    from avatarcli.nets.sp_checkpoint import load_torch_file

    vgg_path, lin_path = Path(vgg_path), Path(lin_path)
    folder = Path(folder) if folder is not None else weights_dir()
    vgg_what = "torchvision's VGG16 ImageNet weights (vgg16-397923af.pth)"
    lin_what = "the lpips package's VGG linear layers (lpips/weights/v0.1/vgg.pth)"
    vgg = _tensors(load_torch_file(vgg_path), vgg_path, vgg_what)
    lin = _tensors(load_torch_file(lin_path), lin_path, lin_what)
    if "lin0.model.1.weight" in vgg and "features.0.weight" in lin:
        raise InputFileError(
            f"the two files are swapped: give the VGG16 file ({lin_path.name}) first, then {vgg_path.name}"
        )
    reference = LPIPS(LPIPSConfig.official()).state_dict()
    _check(vgg, {k: v for k, v in reference.items() if k.startswith("features.")}, vgg_path, vgg_what)
    _check(lin, {k: v for k, v in reference.items() if k.startswith("lin")}, lin_path, lin_what)
    net = LPIPS.from_official_state_dicts(vgg, lin)  # cannot fail after the checks above

    target = folder / f"{LPIPS_NAME}.safetensors"
    write_network_file(target, net.to_safetensors_state_dict(), net.kind, net.config_dict())
    origin = (
        f"converted from {vgg_path.name} (sha256 {sha256_file(vgg_path)}) and {lin_path.name} "
        f"(sha256 {sha256_file(lin_path)}) by avatarcli {__version__}"
    )
    entry = WeightEntry.for_file(LPIPS_NAME, target, LPIPS_LICENCE, origin, net.kind, net.config_dict())
    if update:
        update_manifest([entry], folder)
    notes = []
    extra = sorted(k for k in vgg if not k.startswith("features."))
    if extra:
        notes.append(
            f"{len(extra)} tensors of {vgg_path.name} outside features.* (the classifier) are not used"
        )
    return LPIPSImport(entries=[entry], path=target, notes=notes)
