"""Table T4 (continual few-shot classification): every cell through the benchmark fixture,
and the synthetic twin table. Real cells need the four datasets; without them each cell
records "not run" with the reason and is skipped, and the table still says so. The image
budget and the projection that may skip a cell: conftest.py."""

import numpy as np
import pytest

from hsmlbench.cli import default_out_dir
from hsmlbench.domains.images.configs import IMAGE_TABLES
from hsmlbench.report.assemble import write_table
from hsmlbench.report.image_figures import write_image_figures
from hsmlbench.run.grid import run_or_reuse
from hsmlbench.run.jobs import Job


def _run_cell(benchmark, table, method, budget):
    job = Job(table, method, "1-shot", 0, budget)
    raw = benchmark.pedantic(
        run_or_reuse,
        args=(job, default_out_dir(budget), "runs"),
        kwargs={"progress": True},  # a line every 30 s on the terminal (conftest)
        rounds=1,
        iterations=1,
    )
    if raw["status"] != "done":
        pytest.skip(f"{job.name}: {raw['reason']}")
    benchmark.extra_info.update(
        {
            "budget": budget,
            "clusters_added": sum(e["event"] == "cluster_added" for e in raw["events"]),
            **{
                cell["label"]: float(np.mean(cell["per_task"]))
                for cell in raw["per_dataset"].values()
            },
        }
    )
    for cell in raw["per_dataset"].values():
        assert len(cell["per_task"]) > 0


@pytest.mark.cell("T4")
@pytest.mark.parametrize("method", IMAGE_TABLES["T4"].methods)
def test_T4_cell(benchmark, image_budget, method):
    _run_cell(benchmark, "T4", method, image_budget)


@pytest.mark.cell("T4-synthetic")
@pytest.mark.parametrize("method", IMAGE_TABLES["T4-synthetic"].methods)
def test_T4_synthetic_cell(benchmark, image_budget, method):
    _run_cell(benchmark, "T4-synthetic", method, image_budget)


@pytest.mark.table
@pytest.mark.parametrize("table", ["T4", "T4-synthetic"])
def test_T4_table_and_comparisons(benchmark, image_budget, table):
    budget = image_budget
    out = default_out_dir(budget)
    _, md_path = benchmark.pedantic(write_table, args=(table, budget, out), rounds=1, iterations=1)
    write_image_figures(table, budget, out)
    text = md_path.read_text()
    assert budget in text and "hsml-d better than mumomaml" in text
