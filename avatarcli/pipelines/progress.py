"""Progress for stages that only say what they are doing now (``"sampling view 3/12"``)."""

from __future__ import annotations

from collections.abc import Callable

StageReport = Callable[[str, int, int], None]


class StepBars:
    """One bar per message, each completed when the next message starts (and by :meth:`finish`),
    so no bar is left spinning at 0/1 once its step is over."""

    def __init__(self, report: StageReport | None, prefix: str = "") -> None:
        self.report = report or (lambda *_: None)
        self.prefix = prefix
        self.current: str | None = None

    def __call__(self, message: str) -> None:
        self.finish()
        self.current = f"{self.prefix}{message}"
        self.report(self.current, 0, 1)

    def finish(self) -> None:
        if self.current is not None:
            self.report(self.current, 1, 1)
            self.current = None
