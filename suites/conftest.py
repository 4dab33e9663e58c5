"""Reproduction suites: one module per table, plus speed benchmarks.

``--budget`` picks how long the reproduction runs (default quick; CI uses smoke). Finished
jobs are reused from ``results/``, so a suite at the paper budget re-renders committed runs.
"""

import pytest

from hsmlbench.configs import BUDGETS


def pytest_addoption(parser):
    parser.addoption(
        "--budget",
        default="quick",
        choices=sorted(BUDGETS),
        help="budget of the reproduction suites (default: quick)",
    )


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
