"""Speed of one meta-iteration (meta-batch 25, 5-shot, 5 second-order steps) on regression.

Baselines are measured in the same run: the batched MAML against a per-task loop of the same
math, and HSML and MUMOMAML against batched MAML. Ratios are printed at the end of the run.
"""

import pytest
import torch

from hsmlbench.configs import run_config
from hsmlbench.methods import build_model
from hsmlbench.per_task_reference import per_task_maml_meta_loss
from hsmlbench.seeding import task_generator
from hsmlbench.tasks import sample_tasks

_MEANS: dict[str, float] = {}


def _iteration_fn(method: str):
    config = run_config("T1", method, "5-shot", "paper")
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.outer_lr)
    batch = sample_tasks(config.meta_batch, config.k_shot, config.n_query, task_generator(0))

    def batched():
        loss, _ = model.meta_loss(batch, config.inner_steps_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    def per_task():
        loss = per_task_maml_meta_loss(
            list(model.theta0), batch, config.inner_lr, config.inner_steps_train
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return batched, per_task


def _record(benchmark, name, speed_ratios, baseline=None):
    if benchmark.stats is None:  # --benchmark-disable
        return
    _MEANS[name] = benchmark.stats.stats.mean
    if baseline in _MEANS:
        ratio = _MEANS[baseline] / _MEANS[name]
        benchmark.extra_info[f"speedup_vs_{baseline}"] = ratio
        speed_ratios.append(f"{baseline} / {name}: {ratio:.2f}x")


@pytest.mark.benchmark(group="meta-iteration")
def test_maml_per_task_loop(benchmark, speed_ratios):
    _, per_task = _iteration_fn("maml")
    assert torch.isfinite(benchmark(per_task))
    _record(benchmark, "maml_per_task_loop", speed_ratios)


@pytest.mark.benchmark(group="meta-iteration")
def test_maml_batched(benchmark, speed_ratios):
    batched, _ = _iteration_fn("maml")
    assert torch.isfinite(benchmark(batched))
    _record(benchmark, "maml_batched", speed_ratios, baseline="maml_per_task_loop")


@pytest.mark.benchmark(group="meta-iteration")
@pytest.mark.parametrize("method", ["hsml", "mumomaml"])
def test_method_batched(benchmark, speed_ratios, method):
    batched, _ = _iteration_fn(method)
    assert torch.isfinite(benchmark(batched))
    if benchmark.stats is not None and "maml_batched" in _MEANS:
        cost = benchmark.stats.stats.mean / _MEANS["maml_batched"]
        benchmark.extra_info["cost_vs_maml"] = cost
        speed_ratios.append(f"{method} / maml_batched (cost of one meta-iteration): {cost:.2f}x")
