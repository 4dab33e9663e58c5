"""Table T3 (few-shot image classification): every cell through the benchmark fixture, the
synthetic twin table, and the speed of one meta-iteration.

Real cells need the four datasets (``hsmlbench data check``); without them each cell records
"not run" with the reason and is skipped, and the table still says so. The synthetic cells
run at the image budget (``cpu`` on a CPU by default, see conftest.py) unless projected past
``--max-cell-minutes`` on a CPU; then they are skipped, saying how to run them. One meta-iteration (1-shot, meta-batch 4, second order) is timed for MAML and HSML
at 32×32 on CPU and at 84×84 on a GPU, after checking MAML's batched meta-loss against the
per-task loop.
"""

import numpy as np
import pytest
import torch

from hsmlbench.cli import default_out_dir
from hsmlbench.domains.images.bench import check_against_per_task_loop, meta_iteration
from hsmlbench.domains.images.configs import IMAGE_TABLES, image_run_config
from hsmlbench.report.assemble import write_table
from hsmlbench.report.image_figures import write_image_figures
from hsmlbench.run.grid import run_or_reuse
from hsmlbench.run.jobs import Job

_MEANS: dict[str, float] = {}


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
            **{
                cell["label"]: float(np.mean(cell["per_task"]))
                for cell in raw["per_dataset"].values()
            },
        }
    )
    for cell in raw["per_dataset"].values():
        assert len(cell["per_task"]) > 0
        assert 0.0 <= min(cell["per_task"]) <= max(cell["per_task"]) <= 100.0


@pytest.mark.cell("T3")
@pytest.mark.parametrize("method", IMAGE_TABLES["T3"].methods)
def test_T3_cell(benchmark, image_budget, method):
    _run_cell(benchmark, "T3", method, image_budget)


@pytest.mark.cell("T3-synthetic")
@pytest.mark.parametrize("method", IMAGE_TABLES["T3-synthetic"].methods)
def test_T3_synthetic_cell(benchmark, image_budget, method):
    _run_cell(benchmark, "T3-synthetic", method, image_budget)


@pytest.mark.table
@pytest.mark.parametrize("table", ["T3", "T3-synthetic"])
def test_T3_table_and_comparisons(benchmark, image_budget, table):
    budget = image_budget
    out = default_out_dir(budget)
    _, md_path = benchmark.pedantic(write_table, args=(table, budget, out), rounds=1, iterations=1)
    write_image_figures(table, budget, out)
    text = md_path.read_text()
    assert budget in text
    for claim in (
        "hsml better than mumomaml",
        "hsml better than maml",
        "mumomaml better than maml",
    ):
        assert claim in text


@pytest.mark.benchmark(group="image-meta-iteration")
@pytest.mark.parametrize("method", ["maml", "hsml"])
def test_T3_meta_iteration_speed(benchmark, speed_ratios, method):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = 84 if device == "cuda" else 32  # reduced image size on CPU
    step, model, batch, config = meta_iteration(method, size, device)
    if method == "maml":
        ours, reference = check_against_per_task_loop(model, batch, config)
        assert ours == pytest.approx(reference, rel=1e-4)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert loss == loss  # finite meta-loss (not NaN)
    benchmark.extra_info.update({"device": device, "image_size": size})
    if device == "cuda":
        benchmark.extra_info["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if benchmark.stats is None:  # --benchmark-disable
        return
    mean = benchmark.stats.stats.mean
    _MEANS[method] = mean
    iterations = image_run_config("T3", method, "1-shot", "paper").budget.iterations
    benchmark.extra_info["projected_T3_training_hours"] = iterations * mean / 3600
    if method == "hsml" and "maml" in _MEANS:
        speed_ratios.append(
            f"T3 hsml / maml meta-iteration ({device}, {size}×{size}): {mean / _MEANS['maml']:.2f}x"
        )
