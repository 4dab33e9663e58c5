"""Table T1 (multimodal regression): every cell through the benchmark fixture.

Each cell trains and evaluates at ``--budget`` (reusing finished runs under results/), and the
table is rendered once all cells of the module have run.
"""

import pytest

from hsmlbench.cli import default_out_dir
from hsmlbench.configs import TABLES
from hsmlbench.reproduce import Job, run_job, write_table

CELLS = [(m, s) for m in TABLES["T1"].methods for s in TABLES["T1"].settings]


@pytest.mark.parametrize("method, setting", CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
def test_T1_cell(benchmark, budget, method, setting):
    job = Job("T1", method, setting, 0, budget)
    raw = benchmark.pedantic(
        run_job,
        args=(job, default_out_dir(budget), "runs"),
        kwargs={"progress": False},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        {"budget": budget, "mse": raw["mean"], "ci95": raw["ci95"], "n_tasks": raw["n_tasks"]}
    )
    assert raw["n_tasks"] == len(raw["per_task"]) > 0
    assert raw["per_step_mean"][-1] < raw["per_step_mean"][0], "adaptation did not lower the MSE"


def test_T1_table_and_comparisons(benchmark, budget):
    json_path, md_path = benchmark.pedantic(
        write_table, args=("T1", budget, default_out_dir(budget)), rounds=1, iterations=1
    )
    text = md_path.read_text()
    assert budget in text
    for claim in (
        "hsml better than mumomaml",
        "hsml better than maml",
        "mumomaml better than maml",
    ):
        assert claim in text
