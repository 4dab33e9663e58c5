"""A dependency-free progress line: iteration, loss, iterations/s and ETA.

Where the lines go: a terminal (one redrawn line), a log (a line every 30 s), or, when a
*sink* is installed (:func:`set_sink`), a callable that receives one finished line at most
every :data:`SINK_EVERY_S` seconds, written by ``run.projection.ProgressLine``, e.g.::

    T3-synthetic-maml-1-shot seed 0: iteration 1,200/5,000, loss 1.234, 2m 10s elapsed, ETA 6m 51s

The reproduction suites install one that writes to pytest's terminal reporter, so that long
cells report while they run without ``-s``. A sink is per process (pool workers of a grid
keep their own streams).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hsmlbench.run.projection import ProgressLine

SINK_EVERY_S = 30.0
"""At most one line per this many seconds, per run, to an installed sink."""

_sink: Callable[[str], object] | None = None


def set_sink(write: Callable[[str], object] | None) -> Callable[[str], object] | None:
    """Sends the lines of every ``Progress`` made from now on (and enabled) to ``write``
    (one line, no newline) instead of its stream; None goes back to the streams. Returns
    the sink that was installed before."""
    global _sink
    previous, _sink = _sink, write
    return previous


def get_sink() -> Callable[[str], object] | None:
    return _sink


@contextmanager
def sink(write: Callable[[str], object] | None) -> Iterator[None]:
    """``set_sink(write)`` for the duration of a ``with`` block."""
    previous = set_sink(write)
    try:
        yield
    finally:
        set_sink(previous)


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


class Progress:
    """Redraws one line on a terminal (a new line every ``log_every_s`` elsewhere), or, with
    a sink installed when it is made, writes ``ProgressLine``'s lines to the sink."""

    def __init__(self, label: str, total: int, start: int = 0, enabled: bool = True, stream=None):
        self.label, self.total, self.start = label, total, start
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.log_every_s = 0.2 if self.tty else 30.0
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.line = (
            ProgressLine(label, total, _sink, every_s=SINK_EVERY_S)
            if enabled and _sink is not None and stream is None
            else None
        )

    def update(self, iteration: int, loss: float, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.line is not None:
            self.line.update(iteration, loss)
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
        if not self.enabled:
            return
        if self.line is not None:
            # a closing line for long runs only (one that outlived the throttle): short
            # ones, e.g. a smoke run's, stay quiet
            if self.line.clock() - self.line.started >= self.line.every_s:
                self.line.close(iteration, loss)
            return
        self.update(iteration, loss, force=True)
        if self.tty:
            self.stream.write("\n")
