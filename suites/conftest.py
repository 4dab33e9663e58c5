"""Reproduction suites: one module per table, plus speed benchmarks.

``--budget`` picks how long the reproduction runs (default quick; CI uses smoke). Finished
jobs are reused from ``results/``, so a suite at the paper budget re-renders committed runs.
"""

import os

import pytest

from hsmlbench.cli import default_out_dir
from hsmlbench.domains.regression.configs import BUDGETS
from hsmlbench.run.grid import Job, run_job, write_table


def pytest_addoption(parser):
    parser.addoption(
        "--budget",
        default="quick",
        choices=sorted(BUDGETS),
        help="budget of the reproduction suites (default: quick)",
    )


def pytest_configure(config):
    """With benchmarks disabled (CI) a suite is a correctness run: keep the fast meta-step
    uncompiled (same math), since compiling would cost 20-40 s per model for nothing."""
    if config.getoption("benchmark_disable", default=False):
        os.environ.setdefault("HSMLBENCH_COMPILE", "0")


@pytest.fixture(scope="session")
def budget(request) -> str:
    return request.config.getoption("--budget")


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
        run_job,
        args=(job, default_out_dir(budget), "runs"),
        kwargs={"progress": False},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        {"budget": budget, "mean": raw["mean"], "ci95": raw["ci95"], "n_tasks": raw["n_tasks"]}
    )
    assert raw["n_tasks"] == len(raw["per_task"]) > 0
    assert raw["per_step_mean"][-1] < raw["per_step_mean"][0], "adaptation did not lower the MSE"
    return raw


def _render_table(benchmark, budget: str, table: str) -> str:
    """Writes the table (JSON and markdown) from the finished cells; returns the markdown."""
    _, md_path = benchmark.pedantic(
        write_table, args=(table, budget, default_out_dir(budget)), rounds=1, iterations=1
    )
    return md_path.read_text()
