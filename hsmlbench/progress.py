"""A dependency-free progress line: iteration, loss, iterations/s and ETA."""

from __future__ import annotations

import sys
import time


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


class Progress:
    """Redraws one line on a terminal (a new line every ``log_every_s`` elsewhere)."""

    def __init__(self, label: str, total: int, start: int = 0, enabled: bool = True, stream=None):
        self.label, self.total, self.start = label, total, start
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.log_every_s = 0.2 if self.tty else 30.0
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, iteration: int, loss: float, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < self.log_every_s:
            return
        self.last = now
        done = iteration - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - iteration) / rate if rate > 0 else float("inf")
        line = (
            f"{self.label}: {iteration:>6d}/{self.total} loss {loss:.4f} "
            f"{rate:6.1f} it/s ETA {_format_seconds(eta) if eta != float('inf') else '?'}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self, iteration: int, loss: float) -> None:
        if self.enabled:
            self.update(iteration, loss, force=True)
            if self.tty:
                self.stream.write("\n")
