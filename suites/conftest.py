"""Reproduction suites: one module per table, plus speed benchmarks.

``--budget`` picks how long the reproduction runs (CI uses smoke). Without it, T1 and T2 run
at quick, and the image tables (T3, T4) at quick on a GPU but at ``cpu`` on a CPU: 32×32
images and 100 iterations, a budget of its own (``domains.images.configs``), so that
``pytest suites/ --benchmark-only`` finishes on a laptop. ``--budget cpu`` exists for the
image tables only (T1, T2 and the grid's speed are then skipped). Finished jobs are reused
from ``results/``, so a suite at the paper budget re-renders committed runs.

Before any cell runs, every collected cell is measured (one meta-iteration and a few test
tasks, ``hsmlbench.run.planning``) and the plan is printed, one line per table: cells to
run, reused, skipped, projected time. A cell projected past ``--max-cell-minutes`` (default
30; 0: no bound) on a CPU is skipped, its reason naming the option that runs it; an explicit
``--budget paper`` is never skipped, nor is anything on a GPU. While a cell trains, a
progress line is printed at most every 30 s (without ``-s``).
"""

import contextlib
import os
import sys
import time

import pytest
import torch

from hsmlbench.cli import default_out_dir
from hsmlbench.domains import domain_for
from hsmlbench.domains.images.configs import IMAGE_BUDGETS
from hsmlbench.domains.regression.configs import BUDGETS
from hsmlbench.report.assemble import write_table
from hsmlbench.report.statistics import mean_ci95
from hsmlbench.run import planning, progress
from hsmlbench.run.grid import run_or_reuse
from hsmlbench.run.jobs import Job
from hsmlbench.run.projection import format_duration

SUITE_BUDGETS = sorted(set(BUDGETS).union(*IMAGE_BUDGETS.values()))
DEFAULT_MAX_CELL_MINUTES = 30.0
# What the suites time per cell before planning (``planning.measure``): two meta-iterations
# (the first untimed) and four test tasks per dataset; cheap, since most projections are far
# from the bound (a 32×32 image cell: 1-2 s on the 2-core CPU; a regression cell: ms).
MEASURE_OPTIONS = {"warmup": 1, "repeats": 1, "eval_tasks": 4}

_BUDGETS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    parser.addoption(
        "--budget",
        default=None,
        choices=SUITE_BUDGETS,
        help="budget of the reproduction suites (default: quick; the image tables T3/T4 at "
        "'cpu' when there is no GPU: 32x32 images, 100 iterations; 'cpu' is theirs only)",
    )
    parser.addoption(
        "--max-cell-minutes",
        type=float,
        default=DEFAULT_MAX_CELL_MINUTES,
        help="skip a cell projected past this many minutes on a CPU (default: 30; 0: no "
        "bound; an explicit --budget paper is never skipped)",
    )


def pytest_configure(config):
    """With benchmarks disabled (CI) a suite is a correctness run: keep the fast meta-step
    uncompiled (same math), since compiling would cost 20-40 s per model for nothing."""
    if config.getoption("benchmark_disable", default=False):
        os.environ.setdefault("HSMLBENCH_COMPILE", "0")
    config.addinivalue_line(
        "markers", "cell(table): runs one cell of `table` (params: method, setting), seed 0"
    )
    config.addinivalue_line(
        "markers", "table(name): renders table `name` (default: the `table` param)"
    )
    if config.getoption("--max-cell-minutes") < 0:
        raise pytest.UsageError("--max-cell-minutes must be >= 0 (0: no bound)")
    config.stash[_BUDGETS] = planning.suite_budgets(
        config.getoption("--budget"), on_gpu=torch.cuda.is_available()
    )


def _terminal_line(config):
    """Writes one line to pytest's terminal, also during a test: with output capture
    suspended for the line (as pytest's live logging does), so it shows without -s."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            print(line, file=sys.__stderr__, flush=True)
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)
            reporter.flush()

    return write


@pytest.fixture(autouse=True)
def _progress_to_the_terminal(request):
    """Progress lines of the suites' cells go to pytest's terminal (only here: tests outside
    suites/, run in the same session by CI, keep their own streams)."""
    with progress.sink(_terminal_line(request.config)):
        yield


def _table_budget(config, table: str) -> str | None:
    return config.stash[_BUDGETS][domain_for(table).name]


def _no_budget_reason(config, table: str) -> str:
    known = ", ".join(domain_for(table).budgets(table))
    return f"{table} has no budget {config.getoption('--budget')!r} (it has: {known})"


def _cell_job(item, budget: str) -> Job:
    (table,) = item.get_closest_marker("cell").args
    params = item.callspec.params
    setting = params.get("setting") or domain_for(table).tables[table].settings[0]
    return Job(table, params["method"], setting, 0, budget)


def _table_name(item) -> str:
    marker = item.get_closest_marker("table")
    return marker.args[0] if marker.args else item.callspec.params["table"]


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: plan only what runs
def pytest_collection_modifyitems(session, config, items):
    if config.option.collectonly or config.getoption("benchmark_skip", default=False):
        return
    write = _terminal_line(config)
    cells: dict = {}
    for item in items:
        if item.get_closest_marker("cell") is None:
            continue
        (table,) = item.get_closest_marker("cell").args
        budget = _table_budget(config, table)
        if budget is None:
            item.add_marker(pytest.mark.skip(reason=_no_budget_reason(config, table)))
        else:
            cells[item] = _cell_job(item, budget)
    if not cells:
        return
    jobs = list(dict.fromkeys(cells.values()))
    write(f"plan: {len(jobs)} cells; timing a meta-iteration of each one to train here ...")
    start = time.perf_counter()
    try:
        plan = planning.plan_suite(
            jobs,
            default_out_dir,
            max_cell_minutes=config.getoption("--max-cell-minutes"),
            explicit_paper=config.getoption("--budget") == "paper",
            measure=lambda c, d=None, **kw: planning.measure(c, d, **kw, **MEASURE_OPTIONS),
        )
    except Exception as error:  # a plan is a convenience: never stop the suite over it
        write(f"plan: not made ({type(error).__name__}: {error}); every cell runs")
        return
    for line in plan.lines:
        write(f"plan: {line}")
    write(f"plan: made in {format_duration(time.perf_counter() - start)}")
    skipped_tables = {job.table for job in plan.skipped}
    for item in items:
        if item in cells and cells[item] in plan.skipped:
            item.add_marker(pytest.mark.skip(reason=plan.skipped[cells[item]]))
        elif item.get_closest_marker("table") is not None:
            table = _table_name(item)
            if table in skipped_tables:
                names = [j.name for j in plan.skipped if j.table == table]
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{table}: needs every cell; skipped by the projection: "
                        f"{', '.join(names)} (their reasons say how to run them)"
                    )
                )


def _budget_or_skip(config, table: str) -> str:
    """The budget of ``table``'s domain in this run; skips when that domain has none."""
    value = _table_budget(config, table)
    if value is None:
        pytest.skip(_no_budget_reason(config, table))
    return value


@pytest.fixture(scope="session")
def budget(request) -> str:
    """The budget of the regression tables (T1, T2) and of the grid's speed."""
    return _budget_or_skip(request.config, "T1")


@pytest.fixture(scope="session")
def image_budget(request) -> str:
    """The budget of the image tables (T3, T4): default ``cpu`` without a GPU."""
    return _budget_or_skip(request.config, "T3")


_RATIOS: list[str] = []


@pytest.fixture(scope="session")
def speed_ratios():
    """Benchmarks append 'name: ratio' lines here; they are printed at the end of the run."""
    return _RATIOS


def pytest_terminal_summary(terminalreporter):
    if _RATIOS:
        terminalreporter.section("speed ratios (measured in this run)")
        for line in _RATIOS:
            terminalreporter.write_line(line)


@pytest.fixture
def run_cell(benchmark, budget):
    """``run_cell(table, method, setting)``: one cell through the benchmark fixture."""
    return lambda table, method, setting: _run_cell(benchmark, budget, table, method, setting)


@pytest.fixture
def render_table(benchmark, budget):
    """``render_table(table)``: writes the table from its finished cells, returns the markdown."""
    return lambda table: _render_table(benchmark, budget, table)


def _run_cell(benchmark, budget: str, table: str, method: str, setting: str) -> dict:
    """One table cell (seed 0) through the benchmark fixture; reuses a finished run."""
    job = Job(table, method, setting, 0, budget)
    raw = benchmark.pedantic(
        run_or_reuse,
        args=(job, default_out_dir(budget), "runs"),
        kwargs={"progress": True},  # lines every 30 s through the terminal (see above)
        rounds=1,
        iterations=1,
    )
    mean, ci95 = mean_ci95(raw["per_task"])
    benchmark.extra_info.update(
        {"budget": budget, "mean": mean, "ci95": ci95, "n_tasks": len(raw["per_task"])}
    )
    assert len(raw["per_task"]) > 0
    assert raw["per_step_mean"][-1] < raw["per_step_mean"][0], "adaptation did not lower the MSE"
    return raw


def _render_table(benchmark, budget: str, table: str) -> str:
    """Writes the table (JSON and markdown) from the finished cells; returns the markdown."""
    _, md_path = benchmark.pedantic(
        write_table, args=(table, budget, default_out_dir(budget)), rounds=1, iterations=1
    )
    return md_path.read_text()
