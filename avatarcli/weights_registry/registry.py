"""Where neural weights live, what is installed, and loud failures when something is missing.

Weights are never downloaded. They sit in one folder (``$AVATAR_WEIGHTS``, else the source
checkout's ``weights/``, else ``~/.local/share/avatarcli/weights``) next to a ``manifest.json``
that records, per file: name, file, sha256, size, licence, origin and the network config.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarcli.errors import MissingWeightsError, UserError
from avatarcli.io_utils import atomic_write, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

DINAR_HOW_TO_GET = (
    "the official DINAR checkpoint is CC BY-NC; obtain it from the DINAR authors and run "
    "`avatar weights import dinar path/to/file.ckpt`"
)

SP_HOW_TO_GET = (
    "the official StylePeople checkpoints are MIT-licensed but not downloadable here; obtain "
    "generative_model.pth (and encoder.pth) from the StylePeople authors and run "
    "`avatar weights import stylepeople generative_model.pth [--encoder encoder.pth]`"
)

SP_ENCODER_HOW_TO_GET = (
    "optional (without it the StylePeople fit starts from the average person): obtain encoder.pth and "
    "encoder_config.yaml from the StylePeople authors' data archive and run `avatar weights import "
    "stylepeople generative_model.pth --encoder encoder.pth --encoder-config encoder_config.yaml`"
)

LPIPS_HOW_TO_GET = (
    "optional (without it SSIM stands in for LPIPS): take torchvision's ImageNet VGG16 weights "
    "(vgg16-397923af.pth, e.g. from ~/.cache/torch/hub/checkpoints) and the lpips package's "
    "lpips/weights/v0.1/vgg.pth (pip install lpips), then run "
    "`avatar weights import lpips vgg16-397923af.pth vgg.pth`"
)

#: Weights the tool knows how to use, with a one-line description and how to obtain them.
KNOWN_WEIGHTS: dict[str, tuple[str, str]] = {
    "dinar_encoder": ("DINAR image encoder (photo → style vector)", DINAR_HOW_TO_GET),
    "dinar_generator": ("DINAR neural-texture generator", DINAR_HOW_TO_GET),
    "dinar_renderer": ("DINAR neural renderer", DINAR_HOW_TO_GET),
    "dinar_vq": ("DINAR VQ texture autoencoder (diffusion latent space)", DINAR_HOW_TO_GET),
    "dinar_unet": ("DINAR diffusion UNet, EMA weights (texture inpainting)", DINAR_HOW_TO_GET),
    "dinar_discriminator": ("DINAR discriminator (fine-tuning only)", DINAR_HOW_TO_GET),
    "dinar_uv_layout": ("DINAR's SMPL-X UV layout (uv per UV vertex, faces)", DINAR_HOW_TO_GET),
    "stylepeople_generator": ("StylePeople neural-texture generator", SP_HOW_TO_GET),
    "stylepeople_renderer": ("StylePeople neural renderer", SP_HOW_TO_GET),
    "stylepeople_encoder": (
        "StylePeople EfficientNet-b7 encoder (photo → starting W+ latent of the fit)",
        SP_ENCODER_HOW_TO_GET,
    ),
    "lpips_vgg": (
        "LPIPS-VGG perceptual loss (VGG16 + lpips v0.1 heads; texture refinement, StylePeople fit)",
        LPIPS_HOW_TO_GET,
    ),
}


@dataclass
class WeightEntry:
    """One manifest record."""

    name: str
    file: str
    sha256: str
    size: int
    licence: str
    origin: str
    kind: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_file(
        cls, name: str, path: Path, licence: str, origin: str, kind: str = "", config: dict | None = None
    ) -> WeightEntry:
        """The manifest record of an installed file (its size and sha256 are read from disk)."""
        return cls(
            name, path.name, sha256_file(path), path.stat().st_size, licence, origin, kind, dict(config or {})
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WeightEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class WeightStatus:
    """What ``list_weights`` / ``verify_weights`` report per name."""

    name: str
    status: str  # "present" | "missing" | "mismatch" (``list_weights`` checks size only)
    path: Path | None
    detail: str
    entry: WeightEntry | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "detail": self.detail,
            "entry": asdict(self.entry) if self.entry else None,
        }


def weights_dir() -> Path:
    """The weights folder: ``$AVATAR_WEIGHTS``, the checkout's ``weights/``, or the user data folder."""
    env = os.environ.get("AVATAR_WEIGHTS")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "weights"
    if (checkout / MANIFEST_NAME).is_file():
        return checkout
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "avatarcli" / "weights"


def read_manifest(folder: Path | None = None) -> list[WeightEntry]:
    """The manifest's entries; an absent manifest is an empty one, a corrupt one an error."""
    path = (folder or weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        if data.get("version") != MANIFEST_VERSION or not isinstance(data.get("weights"), list):
            raise ValueError(f"unsupported manifest version {data.get('version')!r}")
        return [WeightEntry.from_json(item) for item in data["weights"]]
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(
            f"weights manifest {path} is damaged ({exc}); fix or delete it and re-import"
        ) from None


def write_manifest(entries: list[WeightEntry], folder: Path | None = None) -> Path:
    """Write the manifest atomically, entries sorted by name."""
    path = (folder or weights_dir()) / MANIFEST_NAME
    data = {
        "version": MANIFEST_VERSION,
        "weights": [asdict(e) for e in sorted(entries, key=lambda e: e.name)],
    }
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    return path


def update_manifest(new_entries: list[WeightEntry], folder: Path | None = None) -> Path:
    """Add or replace entries by name."""
    replaced = {e.name for e in new_entries}
    kept = [e for e in read_manifest(folder) if e.name not in replaced]
    return write_manifest(kept + new_entries, folder)


def _status(entry: WeightEntry, folder: Path, check_hash: bool) -> WeightStatus:
    path = folder / entry.file
    if not path.is_file():
        return WeightStatus(entry.name, "missing", path, f"{path} is listed but absent", entry)
    size = path.stat().st_size
    if size != entry.size:
        return WeightStatus(
            entry.name, "mismatch", path, f"size {size} bytes, manifest says {entry.size}", entry
        )
    if check_hash:
        digest = sha256_file(path)
        if digest != entry.sha256:
            return WeightStatus(
                entry.name, "mismatch", path, f"sha256 {digest[:12]}… ≠ {entry.sha256[:12]}…", entry
            )
    return WeightStatus(entry.name, "present", path, entry.licence, entry)


def _statuses(folder: Path | None, check_hash: bool) -> list[WeightStatus]:
    folder = folder or weights_dir()
    entries = read_manifest(folder)
    out = [_status(e, folder, check_hash) for e in entries]
    listed = {e.name for e in entries}
    for name, (what, how) in KNOWN_WEIGHTS.items():
        if name not in listed:
            out.append(WeightStatus(name, "missing", None, f"{what}; not installed: {how}"))
    return out


def list_weights(folder: Path | None = None) -> list[WeightStatus]:
    """Installed and known weights; sizes are checked, hashes are not (see :func:`verify_weights`)."""
    return _statuses(folder, check_hash=False)


def verify_weights(folder: Path | None = None) -> list[WeightStatus]:
    """Like :func:`list_weights` but with every installed file's sha256 recomputed."""
    return _statuses(folder, check_hash=True)


def require_weights(names: list[str] | tuple[str, ...], folder: Path | None = None) -> dict[str, Path]:
    """Paths of the named weights, or :class:`MissingWeightsError` naming the first problem.

    Only sizes are checked here (hashing gigabytes on every run would be slow); ``avatar
    weights verify`` checks the hashes.
    """
    folder = folder or weights_dir()
    entries = {e.name: e for e in read_manifest(folder)}
    paths: dict[str, Path] = {}
    for name in names:
        how = KNOWN_WEIGHTS.get(name, ("", DINAR_HOW_TO_GET))[1]
        entry = entries.get(name)
        if entry is None:
            raise MissingWeightsError(f"missing weights {folder / (name + '.safetensors')}: {how}")
        status = _status(entry, folder, check_hash=False)
        if status.status != "present":
            raise MissingWeightsError(
                f"weights {folder / entry.file} are {status.status} ({status.detail}): {how}"
            )
        paths[name] = folder / entry.file
    return paths


def load_safetensors(
    name: str, device: str | torch.device = "cpu", folder: Path | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of an installed weights file (safetensors only: nothing is unpickled at run time)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = require_weights([name], folder)[name]
    try:
        return load_file(str(path), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise MissingWeightsError(f"weights {path} cannot be read ({exc}); re-import them") from None
