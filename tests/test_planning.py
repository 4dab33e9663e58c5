"""Planning a suite run on this machine (hsmlbench.run.planning, suites/conftest.py): the
image tables' ``cpu`` budget, the suites' budgets, estimates from a (fake) measured
meta-iteration, the plan lines and skip decisions, and progress lines through a sink."""

import dataclasses
import math
import shutil
from pathlib import Path

import pytest
import torch

from hsmlbench.domains import domain_for, run_config
from hsmlbench.domains.images.configs import IMAGE_BUDGETS, image_run_config
from hsmlbench.domains.regression.configs import BUDGETS
from hsmlbench.run import grid, planning, progress
from hsmlbench.run.jobs import Job
from hsmlbench.run.planning import Measurement
from hsmlbench.run.projection import format_duration

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parents[1] / "suites"
SECONDS_84 = 3.6  # one 84×84 image meta-iteration on the 2-core CPU


def fake_measure(seconds: float, per_task: float = 0.0, setup: float = 0.0, calls=None):
    def measure(config, device=None, **kwargs):
        if calls is not None:
            calls.append((config.job_name, config.budget.name, kwargs))
        return Measurement(seconds, per_task, setup)

    return measure


@pytest.fixture(autouse=True)
def _no_data(monkeypatch, tmp_path):
    """No image datasets here: real T3/T4 cells are "not run"."""
    monkeypatch.setenv("HSMLBENCH_DATA", str(tmp_path / "no-data"))
    planning.clear_cache()


# --------------------------------------------------------------------------- budgets


def test_the_cpu_budget_is_its_own_name_for_32x32_images_on_the_image_tables_only():
    for table in ("T3", "T4"):
        assert IMAGE_BUDGETS[table]["cpu"].name == "cpu"
    for table in ("T3", "T3-synthetic", "T4", "T4-synthetic"):
        method = "mumomaml"
        config = image_run_config(table, method, "1-shot", "cpu")
        assert config.image_size == 32
        assert config.budget.name == "cpu"
        assert "32×32" in config.budget.description and "cpu" not in config.budget.description
        assert str(config.budget.iterations) in config.budget.description
        # the other budgets keep their images
        assert image_run_config(table, method, "1-shot", "quick").image_size == 84
        assert image_run_config(table, method, "1-shot", "paper").image_size == 84
    assert image_run_config("T3-synthetic", "maml", "1-shot", "smoke").image_size == 32
    assert image_run_config("T3", "maml", "1-shot", "smoke").image_size == 84
    quick = IMAGE_BUDGETS["T3"]["quick"]
    assert IMAGE_BUDGETS["T3"]["cpu"].iterations < quick.iterations
    assert "cpu" not in BUDGETS  # the regression budgets are untouched
    assert set(BUDGETS) == {"smoke", "quick", "paper"}


def test_suite_budgets_default_to_cpu_for_images_on_a_cpu_only():
    assert planning.suite_budgets(None, on_gpu=False) == {"regression": "quick", "images": "cpu"}
    assert planning.suite_budgets(None, on_gpu=True) == {"regression": "quick", "images": "quick"}
    for budget in ("smoke", "quick", "paper"):  # asked for: the same name for every table
        for gpu in (False, True):
            assert planning.suite_budgets(budget, gpu) == {
                "regression": budget,
                "images": budget,
            }
    assert planning.suite_budgets("cpu", False) == {"regression": None, "images": "cpu"}


# --------------------------------------------------------------------------- estimates


def test_estimates_from_a_measured_iteration_with_evaluation_and_start_up():
    jobs = [Job("T3-synthetic", "maml", "1-shot", 0, "quick")]
    calls = []
    (cell,) = planning.estimate_cells(
        jobs, Path("nowhere"), measure=fake_measure(SECONDS_84, 0.5, 1.0, calls)
    )
    assert calls == [("T3-synthetic-maml-1-shot", "quick", {"data_root": None})]
    assert (cell.table, cell.name, cell.budget) == (
        "T3-synthetic",
        "T3-synthetic-maml-1-shot-seed0",
        "quick",
    )
    assert cell.iterations == 5_000 and cell.seconds_per_iteration == SECONDS_84
    # 1,000 test tasks on each of 4 datasets at 0.5 s, 1 s of set-up, the fixed part
    assert cell.overhead_s == pytest.approx(4 * 1_000 * 0.5 + 1.0 + planning.JOB_FIXED_S)
    assert cell.projected_s == pytest.approx(5_000 * SECONDS_84 + cell.overhead_s)


def test_compiling_runs_pay_for_the_compiler():
    config = run_config("T1", "hsml", "5-shot", "quick")
    measured = Measurement(0.004, 0.001, 0.5, compiles=True)
    assert planning.overhead_s(config, measured, 1) == pytest.approx(
        1_000 * 0.001 + 0.5 + planning.COMPILE_S + planning.JOB_FIXED_S
    )


def test_finished_jobs_are_reused_and_jobs_without_data_are_not_measured(monkeypatch, tmp_path):
    finished = Job("T3-synthetic", "hsml", "1-shot", 0, "cpu")
    monkeypatch.setattr(
        grid, "finished_result", lambda job, out, version=None: {} if job == finished else None
    )
    jobs = [
        finished,
        Job("T3-synthetic", "maml", "1-shot", 0, "cpu"),
        Job("T3", "maml", "1-shot", 0, "cpu"),  # no data: a "not run" record, no cost
    ]
    calls = []
    cells = planning.estimate_cells(
        jobs, lambda budget: tmp_path / budget, measure=fake_measure(0.4, calls=calls)
    )
    assert [c.reused for c in cells] == [True, False, False]
    assert [c.projected_s for c in cells][0] == 0.0
    assert cells[1].iterations == 100 and cells[1].seconds_per_iteration == 0.4
    assert cells[2].iterations == 0 and cells[2].projected_s == 0.0
    assert [name for name, _, _ in calls] == ["T3-synthetic-maml-1-shot"]  # only that one
    assert planning.not_run_reason(jobs[2]) is not None
    assert planning.not_run_reason(jobs[1]) is None


# --------------------------------------------------------------------------- plan, skip

SYNTHETIC = [
    Job(table, method, "1-shot", 0, "quick")
    for table in ("T3-synthetic", "T4-synthetic")
    for method in domain_for(table).tables[table].methods
]


def _plan_on_a_cpu(jobs, out_dir, measure):
    """The suite's plan on a CPU (no GPU, the default 30-minute bound, no explicit budget)."""
    return planning.plan_suite(
        jobs,
        out_dir,
        max_cell_minutes=30,
        explicit_paper=False,
        on_gpu=lambda job: False,
        measure=measure,
    )


def test_a_slow_meta_iteration_skips_the_quick_image_cells_on_a_cpu(tmp_path):
    plan = _plan_on_a_cpu(SYNTHETIC, tmp_path, fake_measure(SECONDS_84))
    assert set(plan.skipped) == set(SYNTHETIC) and not plan.not_run
    reason = plan.skipped[SYNTHETIC[0]]
    fixed = planning.JOB_FIXED_S
    assert reason == (
        f"T3-synthetic-maml-1-shot-seed0: projected "
        f"{format_duration(5_000 * SECONDS_84 + fixed)} on this CPU, over the 30m "
        "bound for one cell; run it on a GPU, or with `--budget quick --max-cell-minutes 0` "
        "to lift the bound (an explicit `--budget paper` is never skipped)"
    )
    assert plan.lines[0] == (
        "T3-synthetic (quick): 3 cells: 0 to run, 0 reused, 3 skipped; projected 0s on 1 worker"
    )
    assert plan.lines[1].startswith("  skipped T3-synthetic-maml-1-shot-seed0: projected 5h")
    assert plan.lines[-1] == (
        "total, 2 tables: 7 cells: 0 to run, 0 reused, 7 skipped; projected 0s on 1 worker"
    )


def test_the_cpu_budget_fits_under_the_bound_and_is_planned_in_full(tmp_path):
    jobs = [dataclasses.replace(job, budget="cpu") for job in SYNTHETIC]
    plan = _plan_on_a_cpu(jobs, tmp_path, fake_measure(0.5, 0.05))
    assert not plan.skipped
    per_cell = 100 * 0.5 + 4 * 100 * 0.05 + planning.JOB_FIXED_S  # 72 s
    assert plan.lines == [
        "T3-synthetic (cpu): 3 cells: 3 to run, 0 reused, 0 skipped; projected "
        f"{format_duration(3 * per_cell)} on 1 worker",
        "T4-synthetic (cpu): 4 cells: 4 to run, 0 reused, 0 skipped; projected "
        f"{format_duration(4 * per_cell)} on 1 worker",
        "total, 2 tables: 7 cells: 7 to run, 0 reused, 0 skipped; projected "
        f"{format_duration(7 * per_cell)} on 1 worker",
    ]


@pytest.mark.parametrize(
    "explicit_paper, gpu, minutes",
    [(True, False, 30), (False, True, 30), (False, False, 0)],
    ids=["explicit-paper", "gpu", "no-bound"],
)
def test_never_skipped_with_explicit_paper_on_a_gpu_or_without_a_bound(
    tmp_path, explicit_paper, gpu, minutes
):
    jobs = [dataclasses.replace(job, budget="paper") for job in SYNTHETIC[:2]]
    plan = planning.plan_suite(
        jobs,
        tmp_path,
        max_cell_minutes=minutes,
        explicit_paper=explicit_paper,
        on_gpu=lambda job: gpu,
        measure=fake_measure(1e3),  # 60,000 iterations: about 2 years
    )
    assert not plan.skipped
    assert all(d.run for d in plan.decisions)
    assert plan.lines[0].startswith("T3-synthetic (paper): 2 cells: 2 to run, 0 reused, 0 skipped")


def test_real_cells_without_data_stay_not_run_and_are_named(tmp_path):
    jobs = [Job("T3", m, "1-shot", 0, "cpu") for m in ("maml", "hsml")]
    plan = _plan_on_a_cpu(jobs, tmp_path, fake_measure(math.inf))  # never called
    assert not plan.skipped and set(plan.not_run) == set(jobs)
    assert plan.lines == [
        "T3 (cpu): 2 cells: 2 to run, 0 reused, 0 skipped; projected 0s on 1 worker",
        "  not run (data missing, recorded as such): T3-maml-1-shot-seed0, T3-hsml-1-shot-seed0",
    ]


# --------------------------------------------------------------------------- measuring


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two threads wait on each other (drawing
    the synthetic images took 34 s instead of 1 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_measures_one_smoke_size_iteration_once_per_process(one_thread):
    config = image_run_config("T3-synthetic", "maml", "1-shot", "smoke")  # 32×32
    first = planning.measure(config, "cpu", warmup=0, repeats=1, eval_tasks=1)
    assert 0 < first.seconds_per_iteration < 60 and 0 < first.seconds_per_test_task < 60
    assert not first.compiles
    assert planning.measure(config, "cpu") is first  # cached
    assert planning.measure_seconds_per_iteration(config, "cpu") == first.seconds_per_iteration
    regression = run_config("T1", "hsml", "5-shot", "smoke")
    assert 0 < planning.measure_seconds_per_iteration(regression, warmup=0, repeats=1) < 10


# --------------------------------------------------------------------------- progress


def test_progress_lines_go_to_an_installed_sink(monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "SINK_EVERY_S", 0.0)
    with progress.sink(lines.append):
        bar = progress.Progress("T3-synthetic-maml-1-shot seed 0", 5_000)
        bar.update(1, 2.5)
        bar.update(1_200, 1.234)
        bar.close(5_000, 0.5)
        progress.Progress("quiet", 10, enabled=False).update(5, 1.0)
    assert progress.get_sink() is None
    assert lines[1].startswith(
        "T3-synthetic-maml-1-shot seed 0: iteration 1,200/5,000, loss 1.234, "
    )
    assert "elapsed, ETA " in lines[1]
    assert lines[-1].startswith(
        "T3-synthetic-maml-1-shot seed 0: finished at iteration 5,000/5,000"
    )
    assert not any("quiet" in line for line in lines)


def test_without_a_sink_progress_writes_to_its_stream(capsys):
    bar = progress.Progress("job", 10)
    bar.close(10, 0.25)
    assert "job:     10/10 loss 0.2500" in capsys.readouterr().err


# --------------------------------------------------------------------------- the suites


@pytest.fixture
def suite(pytester, monkeypatch):
    """The real suites' conftest and T3 module in a scratch folder (results go there)."""
    for name in ("conftest.py", "test_T3.py"):
        shutil.copy(SUITES / name, pytester.path / name)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    return pytester


def _run(suite, monkeypatch, seconds, *args):
    monkeypatch.setattr(planning, "measure", fake_measure(seconds))
    return suite.runpytest_inprocess(
        "-p", "no:cacheprovider", "--benchmark-disable", "-rs", "-k", "synthetic", *args
    )


def test_the_suite_prints_the_plan_and_skips_what_is_too_slow(suite, monkeypatch):
    result = _run(suite, monkeypatch, SECONDS_84, "--budget", "quick")
    result.assert_outcomes(skipped=4)  # three cells, and the table that needs them
    result.stdout.fnmatch_lines(
        [
            "plan: T3-synthetic (quick): 3 cells: 0 to run, 0 reused, 3 skipped; projected 0s*",
            "plan:   skipped T3-synthetic-maml-1-shot-seed0: projected 5h on this CPU, over "
            "the 30m bound for one cell; run it on a GPU, or with `--budget quick "
            "--max-cell-minutes 0` to lift the bound*",
            "SKIPPED * T3-synthetic-hsml-1-shot-seed0: projected 5h *--max-cell-minutes 0*",
            "SKIPPED * T3-synthetic: needs every cell; skipped by the projection: *",
        ]
    )
    assert progress.get_sink() is None  # the suite put the previous sink back


def test_the_suites_default_image_budget_on_a_cpu_is_cpu(suite, monkeypatch):
    # a meta-iteration so slow that even the cpu budget is skipped: nothing trains here
    result = _run(suite, monkeypatch, 60.0, "--max-cell-minutes", "1")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(
        [
            "plan: T3-synthetic (cpu): 3 cells: 0 to run, 0 reused, 3 skipped*",
            "*projected 1h 40m on this CPU, over the 1m bound for one cell; run it on a GPU, or "
            "with `--budget cpu --max-cell-minutes 0`*",
        ]
    )


def test_progress_lines_reach_the_terminal_while_a_cell_runs(suite, monkeypatch):
    # a subprocess: pytest's output capture (fd-level) as in a real run
    suite.makepyfile(
        test_long="""
        from hsmlbench.run import progress

        def test_long_cell():
            progress.SINK_EVERY_S = 0.0
            bar = progress.Progress("T3-synthetic-maml-1-shot seed 0", 5_000)
            bar.update(1, 2.0)
            bar.update(1_200, 1.234)
            print("captured, not shown")
        """
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "test_long.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["T3-synthetic-maml-1-shot seed 0: iteration 1,200/5,000, loss 1.234, * elapsed, ETA *"]
    )
    assert "captured, not shown" not in result.stdout.str()


def _fake_measure(seconds_per_iteration: float):
    from hsmlbench.run.planning import Measurement

    def measure(config, device=None, **kwargs):
        return Measurement(seconds_per_iteration, 0.0, 0.0, False)

    return measure


@pytest.mark.parametrize(
    "budget, max_minutes, expected",
    [("quick", "30", 4), ("quick", "0", None), ("paper", "30", None)],
)
def test_reproduce_skips_a_cell_projected_past_the_bound_and_exits_4(
    tmp_path, capsys, monkeypatch, budget, max_minutes, expected
):
    """3.6 s per image meta-iteration × 5,000 = 5 h: skipped on a CPU at quick (exit 4, the
    line names the option), run when the bound is lifted or the paper budget is asked for
    (the grid is replaced here: only the decision is under test)."""
    from hsmlbench import cli
    from hsmlbench.run import grid, planning

    monkeypatch.setattr(planning, "measure", _fake_measure(3.6))
    ran = []

    def fake_reproduce(jobs, *args, **kwargs):
        ran.extend(jobs)
        return grid.GridReport(total=len(jobs), finished=len(jobs))

    monkeypatch.setattr(grid, "reproduce", fake_reproduce)
    argv = ["reproduce", "--tables", "T3-synthetic", "--methods", "maml", "--budget", budget]
    argv += ["--max-cell-minutes", max_minutes, "--jobs", "1", "--quiet"]
    argv += ["--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w")]
    code = cli.main(argv)
    out = capsys.readouterr()
    if expected == 4:
        assert code == 4 and ran == []
        assert "projected 5h" in out.out and "--max-cell-minutes 0" in out.out
        assert "1 cells were skipped" in out.err
    else:
        assert code == 0 and [job.name for job in ran] == ["T3-synthetic-maml-1-shot-seed0"]


def test_a_slow_projection_never_skips_a_regression_cell_unless_a_bound_is_given(
    tmp_path, capsys, monkeypatch
):
    """A meta-iteration measured 60 s long (a machine under load, or a fake clock) projects
    each T1 smoke cell past the default bound: without --max-cell-minutes every requested cell
    still runs (a warning names the load); with the bound given, the cells are skipped and
    the written table names each with its reason and the command that runs it."""
    from hsmlbench import cli
    from hsmlbench.run import grid, planning

    monkeypatch.setattr(planning, "measure", _fake_measure(60.0))
    ran = []

    def fake_reproduce(jobs, *args, **kwargs):
        ran.extend(jobs)
        return grid.GridReport(total=len(jobs), finished=len(jobs))

    monkeypatch.setattr(grid, "reproduce", fake_reproduce)
    argv = ["reproduce", "--tables", "T1", "--methods", "maml", "--budget", "smoke", "--quiet"]
    argv += ["--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w"), "--jobs", "1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert [job.name for job in ran] == ["T1-maml-5-shot-seed0", "T1-maml-10-shot-seed0"]
    assert "warning: 2 cells projected over 30m each" in out and "they run anyway" in out

    ran.clear()
    assert cli.main([*argv, "--max-cell-minutes", "30"]) == 4
    assert ran == []
    table = (tmp_path / "out" / "T1.md").read_text()
    assert "Cells skipped in this run (not trained):" in table
    assert "- T1-maml-5-shot-seed0: projected 1h" in table
    assert "--budget smoke --max-cell-minutes 0" in table
