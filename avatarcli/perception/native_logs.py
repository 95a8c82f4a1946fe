"""Keep mediapipe's native log lines out of the user's terminal.

mediapipe 0.10.21 logs from C++ through absl straight to file descriptor 2 (``GLOG_minloglevel``
no longer reaches it): a TFLite banner, an absl notice and one "Feedback manager requires a
model with a single signature inference" warning per graph, i.e. a screenful per batch of
photos. Python cannot filter those writes, so :func:`quiet_native_logs` points descriptor 2 at a
temporary file for the duration of a detection and then copies back everything that is *not*
an info/warning log line: our own progress bar output, Python warnings and native errors still
reach the terminal, only later.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: absl/glog info and warning lines: "I0000 00:00:1795237845.724146   12965 file.cc:114] ..."
_NATIVE_LOG_LINE = re.compile(rb"^[IW]\d{4} [\d:.]+\s+\d+ [^ \]]+:\d+\] ")
#: banners printed once per process by TFLite and absl
_NATIVE_BANNERS = (
    b"INFO: Created TensorFlow Lite",
    b"WARNING: All log messages before absl::InitializeLog() is called",
)

_lock = threading.RLock()


def is_native_log_line(line: bytes) -> bool:
    """Whether one line of stderr is an info/warning line from mediapipe's native code."""
    return bool(_NATIVE_LOG_LINE.match(line)) or line.startswith(_NATIVE_BANNERS)


def filter_native_logs(captured: bytes) -> bytes:
    """``captured`` stderr bytes without mediapipe's info/warning lines (everything else kept)."""
    kept = [line for line in captured.splitlines(keepends=True) if not is_native_log_line(line)]
    return b"".join(kept)


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Capture descriptor 2 while the block runs; write back all but native info/warning lines.

    Does nothing when stderr has no file descriptor (e.g. inside some notebooks). Re-entrant
    and serialised across threads: descriptor 2 is one per process.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    with _lock:
        sys.stderr.flush()
        saved = os.dup(fd)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, fd)
                os.close(saved)
                sink.seek(0)
                kept = filter_native_logs(sink.read())
                while kept:
                    kept = kept[os.write(fd, kept) :]
