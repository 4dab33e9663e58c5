"""The projection of a grid's run time: measuring, skip decisions, the plan, progress lines.

Expected values are computed by hand in the comments, not by calling the module again.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from hsmlbench.run.projection import (
    EXIT_CELLS_SKIPPED,
    CellEstimate,
    Decision,
    ProgressLine,
    decide,
    format_duration,
    how_to_run_hint,
    makespan,
    plan_lines,
    time_per_call,
)

HOW = (
    "run it with `--budget paper` (never skipped), on a GPU, "
    "or with `--max-cell-minutes 0` to lift the bound"
)
BOUND = 1800.0  # 30 minutes for one cell


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def fast_cell(name="T1-synthetic-maml seed 0", table="T1", reused=False, budget="quick"):
    # 0.0025 s x 70,000 iterations = 175 s
    return CellEstimate(table, name, 70_000, 0.0025, reused=reused, budget=budget)


def slow_cell(name="T3-image-maml-1-shot seed 0", table="T3", reused=False, budget="quick"):
    # 3.6 s x 5,000 iterations = 18,000 s = 5 h
    return CellEstimate(table, name, 5_000, 3.6, reused=reused, budget=budget)


# --------------------------------------------------------------------------- cells


def test_projected_seconds_of_a_cell():
    assert fast_cell().projected_s == pytest.approx(175.0)
    assert slow_cell().projected_s == pytest.approx(18_000.0)
    with_overhead = CellEstimate("T1", "c", 70_000, 0.0025, overhead_s=25.0)
    assert with_overhead.projected_s == pytest.approx(200.0)


def test_a_reused_cell_costs_nothing():
    assert slow_cell(reused=True).projected_s == 0.0
    assert CellEstimate("T1", "c", 10, 1.0, overhead_s=30.0, reused=True).projected_s == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"iterations": -1},
        {"seconds_per_iteration": -0.1},
        {"seconds_per_iteration": math.nan},
        {"overhead_s": -1.0},
    ],
)
def test_a_cell_rejects_impossible_numbers(kwargs):
    fields = {"table": "T1", "name": "c", "iterations": 10, "seconds_per_iteration": 1.0}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        CellEstimate(**fields)


# --------------------------------------------------------------------------- decisions


def test_fast_cell_runs_and_slow_cell_is_skipped_on_a_cpu():
    fast, slow = fast_cell(), slow_cell()
    decisions = decide([fast, slow], BOUND, explicit_paper=False, on_gpu=False, how_to_run=HOW)
    assert [d.cell for d in decisions] == [fast, slow]
    assert [d.run for d in decisions] == [True, False]
    assert decisions[0].reason is None
    assert decisions[0].to_train and not decisions[0].skipped
    assert decisions[1].skipped and not decisions[1].to_train


def test_the_reason_names_the_projection_the_bound_and_how_to_run_it():
    (decision,) = decide([slow_cell()], BOUND, False, False, HOW)
    assert decision.reason == (
        "projected 5h on this CPU, over the 30m bound for one cell; "
        "run it with `--budget paper` (never skipped), on a GPU, "
        "or with `--max-cell-minutes 0` to lift the bound"
    )
    assert "\n" not in decision.reason


def test_the_reason_uses_the_callers_option_names():
    how = how_to_run_hint("--budget=paper", "--no-cell-bound")
    assert how == (
        "run it with `--budget=paper` (never skipped), on a GPU, "
        "or with `--no-cell-bound` to lift the bound"
    )
    assert how_to_run_hint() == HOW
    # 3.6 s x 4,870 = 17,532 s = 4 h 52 m 12 s -> "4h 52m"; 20 minutes -> "20m"
    cell = CellEstimate("T3", "c", 4_870, 3.6)
    (decision,) = decide([cell], 1200.0, False, False, how)
    assert decision.reason == (
        "projected 4h 52m on this CPU, over the 20m bound for one cell; " + how
    )


@pytest.mark.parametrize(("explicit_paper", "on_gpu"), [(True, False), (False, True), (True, True)])
def test_the_slow_cell_runs_when_paper_was_asked_for_or_on_a_gpu(explicit_paper, on_gpu):
    (decision,) = decide([slow_cell()], BOUND, explicit_paper, on_gpu, HOW)
    assert decision.run and decision.reason is None


@pytest.mark.parametrize("bound", [None, 0, 0.0])
def test_no_bound_skips_nothing(bound):
    decisions = decide([slow_cell(), fast_cell()], bound, False, False, HOW)
    assert all(d.run for d in decisions)


def test_a_reused_cell_is_never_skipped():
    # 100 iterations x 1,000 s would be far over the bound, but the cell is finished.
    cell = CellEstimate("T3", "done", 100, 1_000.0, reused=True)
    (decision,) = decide([cell], 1.0, False, False, HOW)
    assert decision.run and decision.reason is None
    assert not decision.to_train


def test_the_bound_is_strict():
    at_bound = CellEstimate("T1", "at", 1_800, 1.0)  # exactly 1,800 s
    over = CellEstimate("T1", "over", 1_801, 1.0)  # 1,801 s
    decisions = decide([at_bound, over], BOUND, False, False, HOW)
    assert [d.run for d in decisions] == [True, False]


def test_decide_rejects_a_negative_bound_and_an_empty_hint():
    with pytest.raises(ValueError):
        decide([fast_cell()], -1.0, False, False, HOW)
    with pytest.raises(ValueError):
        decide([fast_cell()], BOUND, False, False, "  ")


# --------------------------------------------------------------------------- makespan


def brute_force_makespan(durations, workers):
    best = math.inf
    for assignment in itertools.product(range(workers), repeat=len(durations)):
        loads = [0.0] * workers
        for duration, worker in zip(durations, assignment):
            loads[worker] += duration
        best = min(best, max(loads))
    return best if durations else 0.0


def test_lpt_makespan_hand_computed():
    # [5, 4, 3, 3] on 2: 5 -> A(5), 4 -> B(4), 3 -> B(7), 3 -> A(8): 8, also the optimum.
    assert makespan([5, 4, 3, 3], 2) == 8
    assert makespan([3, 3, 4, 5], 2) == 8  # the input order does not matter
    assert brute_force_makespan([5, 4, 3, 3], 2) == 8
    # [3, 3, 2, 2, 2] on 2: 3 -> A, 3 -> B, 2 -> A(5), 2 -> B(5), 2 -> A(7): 7,
    # while 3+3 | 2+2+2 gives 6: LPT, not the optimum.
    assert makespan([3, 3, 2, 2, 2], 2) == 7
    assert brute_force_makespan([3, 3, 2, 2, 2], 2) == 6
    # [7, 6, 5, 4, 3] on 3: 7 A, 6 B, 5 C, 4 -> C(9), 3 -> B(9): 9
    assert makespan([7, 6, 5, 4, 3], 3) == 9


def test_makespan_edge_cases():
    assert makespan([], 2) == 0.0
    assert makespan([4, 1, 2], 1) == 7  # one worker: the sum
    assert makespan([4, 1, 2], 5) == 4  # more workers than jobs: the longest
    with pytest.raises(ValueError):
        makespan([1.0], 0)


def test_lpt_is_within_grahams_bound_of_the_brute_force_optimum():
    rng = random.Random(0)
    for _ in range(60):
        workers = rng.randint(1, 3)
        durations = [rng.randint(1, 20) for _ in range(rng.randint(1, 7))]
        optimum = brute_force_makespan(durations, workers)
        lpt = makespan(durations, workers)
        assert optimum <= lpt <= (4 / 3 - 1 / (3 * workers)) * optimum + 1e-9
        assert lpt >= max(durations) and lpt >= sum(durations) / workers


# --------------------------------------------------------------------------- the plan


def grid():
    """T1: four cells to run (175, 175, 100, 50 s) and two reused; T3: three 600 s cells
    and one 5 h image cell skipped."""
    t1 = [
        fast_cell("T1-a seed 0"),
        fast_cell("T1-a seed 1"),
        CellEstimate("T1", "T1-b seed 0", 1_000, 0.1, budget="quick"),  # 100 s
        CellEstimate("T1", "T1-b seed 1", 500, 0.1, budget="quick"),  # 50 s
        fast_cell("T1-c seed 0", reused=True),
        fast_cell("T1-c seed 1", reused=True),
    ]
    t3 = [
        CellEstimate("T3", f"T3-synthetic seed {s}", 6_000, 0.1, budget="quick")  # 600 s
        for s in range(3)
    ] + [slow_cell()]
    return t1 + t3


def test_plan_lines_for_a_grid_of_two_tables():
    decisions = decide(grid(), BOUND, explicit_paper=False, on_gpu=False, how_to_run=HOW)
    assert plan_lines(decisions, workers=2) == [
        # LPT of 175, 175, 100, 50 on 2: A 175+100 = 275, B 175+50 = 225 -> 275 s
        "T1 (quick): 6 cells: 4 to run, 2 reused, 0 skipped; projected 4m 35s on 2 workers",
        # 600, 600, 600 on 2: 1,200 s
        "T3 (quick): 4 cells: 3 to run, 0 reused, 1 skipped; projected 20m on 2 workers",
        "  skipped T3-image-maml-1-shot seed 0: projected 5h on this CPU, over the 30m bound "
        "for one cell; run it with `--budget paper` (never skipped), on a GPU, or with "
        "`--max-cell-minutes 0` to lift the bound",
        # all seven together: A 600+600 = 1,200, B 600+175+175+100+50 = 1,100 -> 1,200 s
        "total, 2 tables: 10 cells: 7 to run, 2 reused, 1 skipped; projected 20m on 2 workers",
    ]


def test_plan_lines_on_a_gpu_runs_the_image_cell():
    decisions = decide(grid(), BOUND, explicit_paper=False, on_gpu=True, how_to_run=HOW)
    lines = plan_lines(decisions, workers=2)
    # 18,000 + 600, 600, 600 on 2: A 18,000 s = 5 h, B 1,800 s -> 5 h
    assert lines[1] == (
        "T3 (quick): 4 cells: 4 to run, 0 reused, 0 skipped; projected 5h on 2 workers"
    )
    assert not any("skipped T3" in line for line in lines)
    assert len(lines) == 3


def test_plan_lines_for_one_table_has_no_total_and_counts_one_worker():
    cells = [CellEstimate("T2", f"c{i}", 60, 1.0) for i in range(3)]  # no budget label
    decisions = decide(cells, None, False, False, HOW)
    assert plan_lines(decisions, workers=1) == [
        "T2: 3 cells: 3 to run, 0 reused, 0 skipped; projected 3m on 1 worker"
    ]
    one = decide([CellEstimate("T2", "c", 45, 1.0, budget="smoke")], None, False, False, HOW)
    assert plan_lines(one, workers=4) == [
        "T2 (smoke): 1 cell: 1 to run, 0 reused, 0 skipped; projected 45s on 4 workers"
    ]


def test_plan_lines_labels_a_table_with_mixed_budgets_and_reports_nothing_to_run():
    cells = [
        CellEstimate("T1", "a", 10, 1.0, reused=True, budget="quick"),
        CellEstimate("T1", "b", 10, 1.0, reused=True, budget="paper"),
    ]
    assert plan_lines(decide(cells, BOUND, False, False, HOW), workers=2) == [
        "T1 (quick, paper): 2 cells: 0 to run, 2 reused, 0 skipped; projected 0s on 2 workers"
    ]


def test_plan_lines_keeps_the_order_of_first_appearance_and_rejects_no_workers():
    cells = [CellEstimate("T3", "x", 1, 1.0), CellEstimate("T1", "y", 1, 1.0)]
    decisions = [Decision(c, run=True) for c in cells]
    lines = plan_lines(decisions, workers=2)
    assert lines[0].startswith("T3: ") and lines[1].startswith("T1: ")
    with pytest.raises(ValueError):
        plan_lines(decisions, workers=0)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.2, "<1s"),
        (0.5, "1s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.6, "1m"),  # rounds up into minutes, not "60s"
        (60, "1m"),
        (65, "1m 05s"),
        (190, "3m 10s"),
        (3599.4, "59m 59s"),
        (3599.6, "1h"),  # not "60m 00s"
        (3900, "1h 05m"),
        (17_532, "4h 52m"),  # 4 h 52 m 12 s
        (18_000, "5h"),
        (14_380, "4h"),  # 3 h 59 m 40 s rounds to the minute
        (86_390, "1d"),  # 23 h 59 m 50 s
        (2 * 86_400 + 3 * 3600, "2d 3h"),
        (2 * 86_400 + 3 * 3600 + 40 * 60, "2d 4h"),
        (172_800, "2d"),
        (math.inf, "?"),
        (math.nan, "?"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# --------------------------------------------------------------------------- measuring


def fake_fn(clock, durations):
    """A callable that advances the fake clock by the next duration; counts its calls."""
    remaining = iter(durations)
    calls = []

    def fn():
        calls.append(None)
        clock.advance(next(remaining))

    return fn, calls


def test_time_per_call_of_a_constant_callable():
    clock = FakeClock()
    fn, calls = fake_fn(clock, [0.5] * 7)
    assert time_per_call(fn, warmup=2, repeats=5, clock=clock) == pytest.approx(0.5)
    assert len(calls) == 7


def test_time_per_call_does_not_time_the_warmup():
    clock = FakeClock()
    fn, _ = fake_fn(clock, [10.0, 10.0] + [1.0] * 5)  # slow first calls (compilation)
    assert time_per_call(fn, warmup=2, repeats=5, clock=clock) == pytest.approx(1.0)


def test_time_per_call_is_the_median_of_the_repeats():
    clock = FakeClock()
    fn, _ = fake_fn(clock, [1.0, 9.0, 2.0, 3.0, 100.0])  # the mean would be 23
    assert time_per_call(fn, warmup=0, repeats=5, clock=clock) == pytest.approx(3.0)


def test_time_per_call_batches_short_calls_up_to_min_seconds():
    clock = FakeClock()
    fn, calls = fake_fn(clock, [0.1] * 13)
    # 0.35 s per repeat needs 4 calls of 0.1 s: 1 warmup + 3 repeats x 4 calls = 13
    result = time_per_call(fn, warmup=1, repeats=3, min_seconds=0.35, clock=clock)
    assert result == pytest.approx(0.1)
    assert len(calls) == 13


def test_time_per_call_with_the_real_clock_and_bad_arguments():
    seconds = time_per_call(lambda: sum(range(100)), warmup=1, repeats=3)
    assert 0.0 <= seconds < 1.0
    with pytest.raises(ValueError):
        time_per_call(lambda: None, repeats=0)
    with pytest.raises(ValueError):
        time_per_call(lambda: None, warmup=-1)
    with pytest.raises(ValueError):
        time_per_call(lambda: None, min_seconds=-1.0)


# --------------------------------------------------------------------------- progress


def test_progress_line_throttles_and_computes_the_eta():
    clock, lines = FakeClock(), []
    label = "T3-synthetic-maml-1-shot seed 0"
    progress = ProgressLine(label, 5_000, lines.append, every_s=30.0, clock=clock)
    clock.t = 5.0
    assert not progress.update(0, 2.5)  # the first update: the start of the rate
    clock.t = 29.0
    assert not progress.update(240, 2.0)  # 29 s < 30 s since construction
    assert lines == []
    clock.t = 35.0
    assert progress.update(300, 1.5)
    # 300 iterations in the 30 s since the first update: 10/s; 4,700 left -> 470 s
    assert lines == [f"{label}: iteration 300/5,000, loss 1.5, 35s elapsed, ETA 7m 50s"]
    clock.t = 60.0
    assert not progress.update(550, 1.4)  # 25 s since the last line
    clock.t = 65.0
    assert progress.update(600, 1.25)
    # 600 in 60 s: 10/s; 4,400 left -> 440 s
    assert lines[-1] == f"{label}: iteration 600/5,000, loss 1.25, 1m 05s elapsed, ETA 7m 20s"
    clock.t = 499.0
    assert progress.update(5_000, 0.812)
    assert lines[-1] == f"{label}: iteration 5,000/5,000, loss 0.812, 8m 19s elapsed, ETA 0s"
    clock.t = 500.0
    progress.close()
    assert lines[-1] == f"{label}: finished at iteration 5,000/5,000, loss 0.812, 8m 20s elapsed"
    progress.close()  # only once
    assert len(lines) == 4


def test_progress_line_eta_of_the_example():
    clock, lines = FakeClock(), []
    progress = ProgressLine("T3 seed 0", 5_000, lines.append, clock=clock)
    progress.update(0, 3.0)
    clock.t = 130.0
    progress.update(1_200, 1.234)
    # 1,200 in 130 s; 3,800 left -> 3,800 x 130 / 1,200 = 411.67 s -> 6m 52s
    assert progress.eta_s(1_200, 130.0) == pytest.approx(3_800 * 130 / 1_200)
    assert lines == ["T3 seed 0: iteration 1,200/5,000, loss 1.234, 2m 10s elapsed, ETA 6m 52s"]


def test_progress_line_eta_is_unknown_until_there_is_a_rate():
    clock, lines = FakeClock(), []
    progress = ProgressLine("c", 100, lines.append, every_s=30.0, clock=clock)
    clock.t = 40.0  # a long first iteration: the first update already writes
    progress.update(1, 4.0)
    assert lines == ["c: iteration 1/100, loss 4, 40s elapsed, ETA ?"]
    assert progress.eta_s(1, 40.0) == math.inf


def test_progress_line_every_zero_writes_each_update_and_close_says_stopped():
    clock, lines = FakeClock(), []
    progress = ProgressLine("c", 1_000, lines.append, every_s=0, clock=clock)
    progress.update(0, 1.0)
    clock.t = 2.0
    progress.update(10, 0.5)
    # 10 in 2 s: 5/s; 990 left -> 198 s
    assert lines == [
        "c: iteration 0/1,000, loss 1, 0s elapsed, ETA ?",
        "c: iteration 10/1,000, loss 0.5, 2s elapsed, ETA 3m 18s",
    ]
    clock.t = 3.0
    progress.close()
    assert lines[-1] == "c: stopped at iteration 10/1,000, loss 0.5, 3s elapsed"


def test_progress_line_close_without_updates():
    lines = []
    progress = ProgressLine("c", 50, lines.append, clock=FakeClock())
    progress.close()
    assert lines == ["c: stopped at iteration 0/50, 0s elapsed"]


# --------------------------------------------------------------------------- exit code


def test_the_exit_code_for_skipped_cells_is_a_distinct_named_constant():
    assert EXIT_CELLS_SKIPPED == 4
    assert EXIT_CELLS_SKIPPED not in (0, 1, 2)
