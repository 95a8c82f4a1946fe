#!/usr/bin/env python3
"""Set up avatarcli in ./.venv and run something — the README's two commands.

    python3 bootstrap.py demo    # install the tool, make an avatar from the bundled example
    python3 bootstrap.py test    # install the tool + test tools, run the fast test suite

Standard library only, so it works on a fresh machine with nothing but Python ≥ 3.11.
Idempotent: the install is skipped when pyproject.toml and requirements.lock have not changed
since the last successful install (a stamp file in .venv), so the second run is fast.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("AVATAR_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def _fingerprint(extras: str) -> str:
    h = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "requirements.lock"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_installed(extras: str = "") -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run under an older python3
        sys.exit(f"avatarcli needs Python ≥ 3.11 (this is {sys.version.split()[0]})")
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".avatarcli-installed{('-' + extras) if extras else ''}"
    want = _fingerprint(extras)
    if stamp.exists() and stamp.read_text() == want:
        return
    target = f".[{extras}]" if extras else "."
    print("installing avatarcli and its pinned dependencies (first run: a few minutes)", flush=True)
    # the lock file pins the whole set (torch CPU/CUDA build included) so pip never backtracks
    cmd = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-c", str(ROOT / "requirements.lock"), "-e", target]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    job = argv[0] if argv else "demo"
    rest = argv[1:]
    if job == "demo":
        ensure_installed()
        example = ROOT / "examples" / "person.png"
        if example.exists():
            cmd = [str(BIN / "avatar"), "create", str(example), "-o", "out", "--overwrite", *rest]
        else:
            cmd = [str(BIN / "avatar"), "doctor", *rest]
    elif job == "test":
        ensure_installed("test")
        cmd = [str(PY), "-m", "pytest", *rest]
    else:
        print(__doc__)
        return 2
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
