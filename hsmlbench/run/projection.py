"""Project a grid's run time from a measured meta-iteration, and skip cells that are too slow.

Before a grid runs, every cell (one table, method, setting and seed at a budget) gets a
projected time on this machine: its meta-iterations times the *measured* time of one
meta-iteration (see :func:`time_per_call`), plus an estimate for evaluation and start-up.
:func:`decide` skips the cells projected past a bound for one cell, saying why and which
option runs them, and :func:`plan_lines` prints one line per table: the cells to run, the
ones reused (finished already), the ones skipped, and the projected wall time on the
workers.  :class:`ProgressLine` reports on the long cells while they run.

Standard library only, on purpose: the grid and the benchmark suites both import it.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "EXIT_CELLS_SKIPPED",
    "CellEstimate",
    "Decision",
    "ProgressLine",
    "decide",
    "format_duration",
    "how_to_run_hint",
    "makespan",
    "plan_lines",
    "time_per_call",
]

EXIT_CELLS_SKIPPED = 4
"""Exit status of a grid that ran what it could but had cells skipped by the projection.

Not a failure of the cells that ran (their results are written), but the grid is
incomplete: the skipped cells were projected past the bound for one cell on this CPU and
each has a line saying how to run it.  Distinct from 0 (everything ran or was reused), 1
(an error) and 2 (a usage error), so that a script can tell the cases apart.
"""


# --------------------------------------------------------------------------- durations


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def format_duration(seconds: float) -> str:
    """A human-friendly duration: ``"45s"``, ``"3m 10s"``, ``"1h 05m"``, ``"2d 3h"``.

    Two units at most, rounded to the smaller one shown (so ``3599.6`` s is ``"1h"``, not
    ``"60m 00s"``); a smaller unit that rounds to zero is left out (``"30m"``, ``"5h"``).  Under one second (but more than zero) is ``"<1s"``; negative
    durations are clamped to ``"0s"``; infinite or NaN durations (an ETA with no rate yet)
    are ``"?"``.
    """
    if not math.isfinite(seconds):
        return "?"
    if seconds <= 0:
        return "0s"
    if seconds < 0.5:
        return "<1s"
    whole = _round_half_up(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    total_minutes = _round_half_up(seconds / 60)
    if total_minutes < 24 * 60:
        hours, minutes = divmod(total_minutes, 60)
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(_round_half_up(seconds / 3600), 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


# --------------------------------------------------------------------------- measuring


def time_per_call(
    fn: Callable[[], object],
    warmup: int = 2,
    repeats: int = 5,
    min_seconds: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per call of the zero-argument callable ``fn``: the median over ``repeats``.

    ``fn`` is called ``warmup`` times untimed first (compilation, caches, allocation).
    Each repeat then calls it once, or, when ``min_seconds`` is positive, as many times as
    it takes for the repeat to last at least ``min_seconds`` (for calls too short for the
    clock), and counts the repeat's time divided by its calls.  The median keeps one slow
    repeat (another process taking the CPU) from moving the projection.  ``clock`` is
    injectable for tests.

    The cost is ``warmup + repeats`` calls at least: with a 3.6 s meta-iteration and the
    defaults, about 25 s of measuring.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds}")
    for _ in range(warmup):
        fn()
    per_call = []
    for _ in range(repeats):
        calls = 0
        start = clock()
        while True:
            fn()
            calls += 1
            elapsed = clock() - start
            if elapsed >= min_seconds:
                break
        per_call.append(elapsed / calls)
    return statistics.median(per_call)


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellEstimate:
    """One cell of the grid with its projected cost on this machine.

    ``iterations`` is the number of meta-iterations still to train, ``seconds_per_iteration``
    the measured time of one (:func:`time_per_call`), ``overhead_s`` an estimate of the
    evaluation and start-up.  A ``reused`` cell (finished already) costs nothing.
    ``budget`` (``"quick"``, ``"paper"``, ...) is optional and only labels the table line.
    """

    table: str
    name: str
    iterations: int
    seconds_per_iteration: float
    overhead_s: float = 0.0
    reused: bool = False
    budget: str | None = None

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"{self.name}: iterations must be >= 0, got {self.iterations}")
        if not self.seconds_per_iteration >= 0:  # also rejects NaN
            raise ValueError(
                f"{self.name}: seconds_per_iteration must be >= 0, got {self.seconds_per_iteration}"
            )
        if not self.overhead_s >= 0:
            raise ValueError(f"{self.name}: overhead_s must be >= 0, got {self.overhead_s}")

    @property
    def projected_s(self) -> float:
        """Projected seconds to run this cell here; 0 for a reused cell."""
        if self.reused:
            return 0.0
        return self.iterations * self.seconds_per_iteration + self.overhead_s


@dataclass(frozen=True)
class Decision:
    """Whether the grid goes ahead with a cell.

    ``run`` is False only for a cell skipped by the projection; ``reason`` is then one line
    with its projected time, the bound, and how to run it.  A reused cell has
    ``run=True`` (the grid reuses its result; it costs nothing) and ``reason=None``.
    """

    cell: CellEstimate
    run: bool
    reason: str | None = None

    @property
    def skipped(self) -> bool:
        return not self.run

    @property
    def to_train(self) -> bool:
        """True for a cell the grid will actually train now (not skipped, not reused)."""
        return self.run and not self.cell.reused


def how_to_run_hint(
    paper_option: str = "--budget paper",
    lift_bound_option: str = "--max-cell-minutes 0",
) -> str:
    """The usual ``how_to_run`` text for :func:`decide`, with the caller's option names."""
    return (
        f"run it with `{paper_option}` (never skipped), on a GPU, "
        f"or with `{lift_bound_option}` to lift the bound"
    )


def decide(
    cells: Iterable[CellEstimate],
    bound_s: float | None,
    explicit_paper: bool,
    on_gpu: bool,
    how_to_run: str,
) -> list[Decision]:
    """Run or skip each cell, in order.

    A cell is skipped when it is not reused, there is a bound (``bound_s`` not None and not
    0), the user did not ask for the ``paper`` budget explicitly, the grid is not on a GPU,
    and the cell's projected time is over the bound (strictly).  The reason of a skipped
    cell reads ``"projected 4h 52m on this CPU, over the 30m bound for one cell; "``
    followed by ``how_to_run`` (see :func:`how_to_run_hint`), so the caller names its own
    options.
    """
    if bound_s is not None and not bound_s >= 0:
        raise ValueError(f"bound_s must be None or >= 0 (0: no bound), got {bound_s}")
    if not how_to_run.strip():
        raise ValueError("how_to_run must say how to run a skipped cell")
    bounded = bool(bound_s) and not explicit_paper and not on_gpu
    decisions = []
    for cell in cells:
        projected = cell.projected_s
        if bounded and not cell.reused and projected > bound_s:
            reason = (
                f"projected {format_duration(projected)} on this CPU, over the "
                f"{format_duration(bound_s)} bound for one cell; {how_to_run}"
            )
            decisions.append(Decision(cell, run=False, reason=reason))
        else:
            decisions.append(Decision(cell, run=True))
    return decisions


# --------------------------------------------------------------------------- the plan


def makespan(durations: Iterable[float], workers: int) -> float:
    """Wall time of ``durations`` on ``workers`` with the greedy longest-first schedule.

    Longest processing time first (LPT): each job, longest first, goes to the worker that
    is free first.  Not always optimal (``[3, 3, 2, 2, 2]`` on 2 workers gives 7, the best
    is 6), but within 4/3 of the optimum, and it is how a pool that takes the longest
    cells first behaves.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(decisions: Sequence[Decision], workers: int) -> str:
    to_train = [d for d in decisions if d.to_train]
    reused = sum(1 for d in decisions if d.run and d.cell.reused)
    skipped = sum(1 for d in decisions if d.skipped)
    wall = makespan((d.cell.projected_s for d in to_train), workers)
    return (
        f"{_plural(len(decisions), 'cell')}: {len(to_train)} to run, {reused} reused, "
        f"{skipped} skipped; projected {format_duration(wall)} on {_plural(workers, 'worker')}"
    )


def plan_lines(decisions: Sequence[Decision], workers: int) -> list[str]:
    """The plan, one line per table (in order of first appearance), e.g.::

        T1 (quick): 6 cells: 4 to run, 2 reused, 0 skipped; projected 3m 10s on 2 workers
          skipped T3-image-maml-1-shot seed 0: projected 4h 52m on this CPU, over ...

    The projected time is the makespan (:func:`makespan`) of the cells to run over
    ``workers``.  Each skipped cell gets an indented line with its reason, under its table.
    With more than one table, a last ``total`` line schedules all the cells to run
    together, as one grid does.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    tables: dict[str, list[Decision]] = {}
    for decision in decisions:
        tables.setdefault(decision.cell.table, []).append(decision)
    lines = []
    for table, group in tables.items():
        budgets = list(dict.fromkeys(d.cell.budget for d in group if d.cell.budget))
        label = f"{table} ({', '.join(budgets)})" if budgets else table
        lines.append(f"{label}: {_summary(group, workers)}")
        for decision in group:
            if decision.skipped:
                lines.append(f"  skipped {decision.cell.name}: {decision.reason}")
    if len(tables) > 1:
        lines.append(f"total, {len(tables)} tables: {_summary(decisions, workers)}")
    return lines


# --------------------------------------------------------------------------- progress


class ProgressLine:
    """A progress line every ``every_s`` seconds for a long cell, for logs and CI output.

    ``update(iteration, loss)`` writes at most one line per ``every_s`` seconds (the first
    one ``every_s`` after the ProgressLine is made), like::

        T3-synthetic-maml-1-shot seed 0: iteration 1,200/5,000, loss 1.234, 2m 10s elapsed, ETA 6m 51s

    Elapsed time counts from construction; the ETA uses the average rate since the first
    update (so a slow first iteration, compilation included, does not distort it) and is
    ``?`` until there are two updates.  ``close()`` writes a final line.  ``write`` receives
    lines without a newline; ``clock`` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        label: str,
        total: int,
        write: Callable[[str], object],
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.label, self.total, self.write = label, total, write
        self.every_s, self.clock = every_s, clock
        self.started = clock()
        self._last_write = self.started
        self._first: tuple[float, int] | None = None  # (time, iteration) of the first update
        self._iteration: int | None = None
        self._loss: float | None = None
        self._closed = False

    def eta_s(self, iteration: int, now: float) -> float:
        """Seconds left at the average rate since the first update; ``inf`` without a rate."""
        if iteration >= self.total:
            return 0.0
        if self._first is None:
            return math.inf
        first_time, first_iteration = self._first
        done, spent = iteration - first_iteration, now - first_time
        if done <= 0 or spent <= 0:
            return math.inf
        return (self.total - iteration) * spent / done

    def _line(self, iteration: int, loss: float | None, now: float, lead: str = "") -> str:
        parts = [f"{lead}iteration {iteration:,}/{self.total:,}"]
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        parts.append(f"{format_duration(now - self.started)} elapsed")
        return f"{self.label}: " + ", ".join(parts)

    def update(self, iteration: int, loss: float) -> bool:
        """Record progress; write a line if ``every_s`` has passed since the last one.

        Returns whether a line was written.
        """
        now = self.clock()
        if self._first is None:
            self._first = (now, iteration)
        self._iteration, self._loss = iteration, loss
        if now - self._last_write < self.every_s:
            return False
        self._last_write = now
        eta = format_duration(self.eta_s(iteration, now))
        self.write(f"{self._line(iteration, loss, now)}, ETA {eta}")
        return True

    def close(self, iteration: int | None = None, loss: float | None = None) -> None:
        """Write the final line (once): where the cell stopped, its loss and elapsed time."""
        if self._closed:
            return
        self._closed = True
        if iteration is None:
            iteration = self._iteration if self._iteration is not None else 0
        if loss is None:
            loss = self._loss
        lead = "finished at " if iteration >= self.total else "stopped at "
        self.write(self._line(iteration, loss, self.clock(), lead))
