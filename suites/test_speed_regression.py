"""Speed of one meta-iteration (meta-batch 25, 5-shot, 5 second-order steps, Adam step
included) on regression, every baseline measured in the same run:

- batched MAML against a per-task loop of the same math (what batching buys);
- the fast meta-step against the autograd reference, per method (what explicit inner-loop
  gradients plus ``torch.compile`` buy), at one thread (what each job gets under
  ``--jobs 2`` on a 2-core machine) and at torch's default thread count;
- HSML and MUMOMAML against MAML on the same path (the cost of a task encoder).

Compiling is paid once per process; the first call's time (compile included) is recorded as
``first_call_s`` and printed with the ratios. Benchmarks only time: the fast and autograd
meta-gradients are checked equal in tests/test_meta_step.py.
"""

import time

import pytest
import torch

from hsmlbench.domains.regression.configs import run_config
from hsmlbench.domains.regression.per_task_reference import per_task_maml_meta_loss
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.builtin import build_model
from hsmlbench.run.training import make_optimizer
from hsmlbench.seeding import task_generator

_MEANS: dict[str, float] = {}
DEFAULT_THREADS = torch.get_num_threads()
THREAD_COUNTS = sorted({1, DEFAULT_THREADS})


def _iteration_fn(method: str, meta_step: str = "autograd"):
    config = run_config("T1", method, "5-shot", "paper", meta_step=meta_step)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    batch = sample_tasks(config.meta_batch, config.k_shot, config.n_query, task_generator(0))

    def batched():
        loss, _ = model.meta_loss(batch, config.inner_steps_train)
        optimizer.zero_grad()
        loss.backward()
        if config.outer_grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.outer_grad_clip)
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

    return batched, per_task, model


def _record(benchmark, name, speed_ratios, baseline=None, word="speedup"):
    if benchmark.stats is None:  # --benchmark-disable
        return
    _MEANS[name] = benchmark.stats.stats.mean
    if baseline in _MEANS:
        if word == "speedup":
            ratio = _MEANS[baseline] / _MEANS[name]
            line = f"{baseline} / {name}: {ratio:.2f}x"
        else:
            ratio = _MEANS[name] / _MEANS[baseline]
            line = f"{name} / {baseline} ({word}): {ratio:.2f}x"
        benchmark.extra_info[f"{word}_vs_{baseline}"] = ratio
        speed_ratios.append(line)


@pytest.mark.benchmark(group="meta-iteration")
def test_maml_per_task_loop(benchmark, speed_ratios):
    _, per_task, _ = _iteration_fn("maml")
    assert torch.isfinite(benchmark(per_task))
    _record(benchmark, "maml_per_task_loop", speed_ratios)


@pytest.mark.benchmark(group="meta-iteration")
def test_maml_batched(benchmark, speed_ratios):
    batched, _, _ = _iteration_fn("maml")
    assert torch.isfinite(benchmark(batched))
    _record(benchmark, "maml_batched", speed_ratios, baseline="maml_per_task_loop")


# Baselines first: each case's ratio is computed against cases measured before it.
CASES = [
    (threads, method, path)
    for threads in THREAD_COUNTS
    for path in ("autograd", "fast")
    for method in ("maml", "hsml", "mumomaml")
]


@pytest.mark.benchmark(group="meta-step path")
@pytest.mark.parametrize(
    "threads, method, path", CASES, ids=[f"{m}-{p}-{t}thread" for t, m, p in CASES]
)
def test_meta_step_path(benchmark, speed_ratios, threads, method, path):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch._dynamo.reset()  # compiled code is specialised to a thread count: compile afresh
    try:
        batched, _, model = _iteration_fn(method, path)
        start = time.perf_counter()
        batched()  # the first call compiles (fast path)
        first_call = time.perf_counter() - start
        assert torch.isfinite(benchmark(batched))
    finally:
        torch.set_num_threads(previous)
    name = f"{method}_{path}_{threads}thread"
    benchmark.extra_info.update(
        threads=threads, first_call_s=first_call, implementation=model.meta_step_implementation
    )
    if benchmark.stats is None:
        return
    speed_ratios.append(
        f"{name}: {model.meta_step_implementation}; first call (compile included) "
        f"{first_call:.1f} s, then {1e3 * benchmark.stats.stats.mean:.2f} ms per meta-iteration"
    )
    if path == "fast":
        _record(benchmark, name, speed_ratios, baseline=f"{method}_autograd_{threads}thread")
    else:  # a baseline: its mean is kept for the fast path's ratio
        _record(benchmark, name, speed_ratios)
    if method != "maml":
        _record(benchmark, name, speed_ratios, f"maml_{path}_{threads}thread", word="cost")
