"""An allow-list unpickler for pose files: numpy arrays and plain containers, nothing else.

A ``.pkl`` from the internet can run any code on ``pickle.load``; SMPL/AIST++ pose files only
ever need dicts, lists, numbers, strings and numpy arrays, so every other global is refused
with an error that names the file and the offending callable.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from avatarcli.errors import InputFileError

#: (module, name) pairs a pose pickle may reference. Both numpy 1 and numpy 2 module paths.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # protocol-2 pickles from Python 2/3 encode raw array bytes through this codec call
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("collections", "OrderedDict"),
    }
)


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only containers, scalars and numpy arrays."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    return safe_loads(data, name=str(path))


def safe_loads(data: bytes, *, name: str = "<bytes>") -> Any:
    """Unpickle bytes with the allow-list; Python 2 pickles are read as latin-1 text."""
    try:
        return _AllowListUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refusing"):
            raise InputFileError(
                f"{name}: {exc}: pose pickles may only contain numbers, lists, dicts and numpy arrays "
                "(the file may be malicious; convert it to .npz if you trust it)"
            ) from exc
        raise InputFileError(f"{name} is not a valid pickle file ({exc})") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise InputFileError(f"{name} is not a valid pickle file ({type(exc).__name__}: {exc})") from exc
