"""Plan a grid or a suite run on this machine: measure, project, decide.

:mod:`hsmlbench.run.projection` is the pure part (estimates, skip decisions, plan lines,
progress lines); this module feeds it with what only a real run can tell:

- :func:`measure` times one meta-iteration of a job's config (model built by its domain, one
  meta-batch from its training stream, ``domain.meta_step`` plus the optimizer step) and one
  test task of its evaluation, once per (table, method, setting, budget, device) and process;
- :func:`estimate_cells` turns jobs into :class:`~hsmlbench.run.projection.CellEstimate`
  (finished jobs are ``reused``; jobs whose data is missing cost nothing: they write a
  "not run" record);
- :func:`plan_suite` is what the reproduction suites (``suites/conftest.py``) do before any
  cell runs: the budgets, the estimates, the decisions and the plan lines.

Nothing here defines what a job computes (not part of any job's code version).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hsmlbench.run.projection import CellEstimate, Decision, decide, plan_lines, time_per_call

__all__ = [
    "COMPILE_S",
    "JOB_FIXED_S",
    "Measurement",
    "SuitePlan",
    "clear_cache",
    "estimate_cells",
    "measure",
    "measure_seconds_per_iteration",
    "not_run_reason",
    "overhead_s",
    "plan_suite",
    "suite_budgets",
    "suite_how_to_run",
]

COMPILE_S = 30.0
"""Compiling the fast meta-step once per model: 20-40 s on a cold cache (docs/RUNNING.md, measured
on the 2-core CPU; a few seconds warm). Counted when a run will compile it."""

JOB_FIXED_S = 2.0
"""Per job, besides the measured parts: provenance (two ``git`` calls), checkpoints, the
raw file. About a second on the 2-core CPU; doubled to stay on the safe side."""

EVAL_TASKS_MEASURED = 8
"""Test tasks per evaluation cell timed by :func:`measure`. A run evaluates them in chunks
of ``config.eval_chunk`` (100): timing a small chunk costs little and overstates the time
per task (less batching), so the projection errs long."""


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` timed for one config on one device.

    ``seconds_per_iteration``: one meta-iteration (meta-step and optimizer step), the median
    of the repeats after warm-up. ``seconds_per_test_task``: evaluating one test task
    (``inner_steps_test`` steps and the query metric), from a small chunk.
    ``setup_s``: building the model, the training stream and the test tasks, once.
    ``compiles``: whether a run of this config compiles its meta-step (the measured
    iteration is eager, so it is then an upper bound and :data:`COMPILE_S` is added).
    """

    seconds_per_iteration: float
    seconds_per_test_task: float = 0.0
    setup_s: float = 0.0
    compiles: bool = False


_CACHE: dict[tuple, Measurement] = {}


def clear_cache() -> None:
    """Forget every measurement of this process (tests)."""
    _CACHE.clear()


def _cache_key(config, device) -> tuple:
    return (config.table, config.method, config.setting, config.budget.name, str(device))


def _will_compile(model, config) -> bool:
    """Whether ``train`` compiles this config's meta-step (see ``run.training``): a fast
    regression meta-step, at least ``MIN_ITERATIONS_TO_COMPILE`` iterations, compiling on."""
    from hsmlbench.methods.meta_step import compile_enabled
    from hsmlbench.run.training import MIN_ITERATIONS_TO_COMPILE

    return (
        getattr(model, "meta_step", "autograd") == "fast"
        and hasattr(model, "compile_meta_step")
        and config.budget.iterations >= MIN_ITERATIONS_TO_COMPILE
        and compile_enabled()
    )


def measure(
    config,
    device=None,
    *,
    data_root=None,
    warmup: int = 1,
    repeats: int = 3,
    eval_tasks: int = EVAL_TASKS_MEASURED,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Times one meta-iteration and one test task of ``config`` on ``device`` (default: the
    domain's, CUDA for images when there is one), as ``train`` and ``evaluate`` run them.

    Cached per (table, method, setting, budget, device) in this process. Costs ``warmup +
    repeats`` meta-iterations, one evaluation chunk of ``eval_tasks`` tasks per test cell,
    and building the model and data once (a few seconds for a 32×32 image config on a
    2-core CPU, milliseconds for regression). The fast regression meta-step is timed eagerly
    (compiling it would cost 20-40 s). The caller's RNG state is kept (training seeds its
    own anyway). Raises what the domain raises when the data is missing: check
    :func:`not_run_reason` first.
    """
    from hsmlbench.domains import domain_for
    from hsmlbench.run.evaluation import evaluate
    from hsmlbench.run.numerics import set_job_threads
    from hsmlbench.run.training import clip_outer_gradient, make_optimizer

    domain = domain_for(config.table)
    device = domain.device(device)
    key = _cache_key(config, device)
    if key in _CACHE:
        return _CACHE[key]
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    threads = torch.get_num_threads()
    set_job_threads(domain.name)  # measured with the threads the job will run with
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(0)
        t0 = clock()
        model = domain.build_model(config).to(device)
        compiles = _will_compile(model, config)
        if hasattr(model, "compile_meta_step"):
            model.compile_meta_step = False
        optimizer = make_optimizer(model, config)
        stream = domain.training_stream(config, 0, data_root, device)
        try:
            _, batch = next(iter(stream.batches(0, 1)))
        finally:
            stream.close()
        small = dataclasses.replace(
            config,
            budget=dataclasses.replace(
                config.budget, n_test_tasks=max(1, min(eval_tasks, config.budget.n_test_tasks))
            ),
        )
        cells = domain.evaluation_cells(small, data_root)
        sync()
        setup_s = clock() - t0

        def step() -> float:
            optimizer.zero_grad(set_to_none=True)
            loss, _ = domain.meta_step(model, batch, config)
            if config.outer_grad_clip is not None:
                clip_outer_gradient(
                    model, config.outer_grad_clip, getattr(config, "outer_clip_groups", None)
                )
            optimizer.step()
            sync()
            return loss

        model.train()
        if domain.name == "regression":  # milliseconds each: more of them, for a steady median
            warmup, repeats = max(warmup, 3), max(repeats, 9)
        per_iteration = time_per_call(step, warmup=warmup, repeats=repeats, clock=clock)
        start = clock()
        evaluate(model, small, data_root, device, cells=cells)
        sync()
        n_tasks = small.budget.n_test_tasks * max(1, len(cells))
        per_task = (clock() - start) / n_tasks
    torch.set_num_threads(threads)
    result = Measurement(per_iteration, per_task, setup_s, compiles)
    _CACHE[key] = result
    return result


def measure_seconds_per_iteration(config, device=None, **kwargs) -> float:
    """Seconds of one meta-iteration of ``config`` here (:func:`measure`, cached)."""
    return measure(config, device, **kwargs).seconds_per_iteration


def overhead_s(config, measured: Measurement, n_eval_cells: int) -> float:
    """Everything of a job but its meta-iterations, estimated from ``measured``.

    The evaluation: ``n_test_tasks`` per test cell (images: four datasets; regression: one)
    at the measured time per task, which was taken on a small chunk and so errs long; the
    start-up as measured (model, training stream, test tasks; the real run builds the full
    test set, which for synthetic images costs about what the small one did, since the
    split is drawn whole either way); compiling (:data:`COMPILE_S`) when the run compiles;
    and :data:`JOB_FIXED_S` for provenance, checkpoints and the raw file.
    """
    evaluation = measured.seconds_per_test_task * config.budget.n_test_tasks * n_eval_cells
    compiling = COMPILE_S if measured.compiles else 0.0
    return evaluation + measured.setup_s + compiling + JOB_FIXED_S


def not_run_reason(job, data_root=None) -> str | None:
    """Why ``job`` cannot run here (its data is missing: it writes a "not run" record and
    costs nothing), or None (also for a broken plug-in's job: it fails, naming the plug-in)."""
    from hsmlbench.methods.registry import BrokenMethodError, PluginError

    try:
        problems = job.domain.data_problems(job.config, data_root)
    except (BrokenMethodError, PluginError):
        return None
    if not problems:
        return None
    return "; ".join(f"{name}: {why}" for name, why in problems.items())


def _n_eval_cells(config) -> int:
    return len(getattr(config, "datasets", ())) or 1


def estimate_cells(
    jobs: Iterable,
    out_dir: Path | Callable[[str], Path],
    *,
    data_root=None,
    device=None,
    measure: Callable[..., Measurement] = measure,
    versions: dict[str, str] | None = None,
) -> list[CellEstimate]:
    """One :class:`CellEstimate` per job, in order.

    A job with a finished result under ``out_dir`` (``hsmlbench.run.grid.finished_result``: same config,
    seed and code version) is ``reused``. A job whose data is missing costs nothing (it
    writes a "not run" record at once): 0 iterations. Every other job is projected at its
    budget's iterations × the measured time of one meta-iteration, plus
    :func:`overhead_s`. ``out_dir`` may be a function of the budget's name (the suites
    write each budget to its own folder). ``measure`` is injectable (tests pass a fake).
    A checkpoint to resume from is not taken into account: the projection is for a full run.
    """
    from hsmlbench.methods.registry import BrokenMethodError, PluginError
    from hsmlbench.run.grid import finished_result
    from hsmlbench.run.versioning import code_version

    versions = dict(versions or {})
    estimates = []
    for job in jobs:
        try:
            config = job.config
        except BrokenMethodError:  # a broken plug-in: its job fails at once when run
            estimates.append(CellEstimate(job.table, job.name, 0, 0.0, budget=job.budget))
            continue
        folder = out_dir(job.budget) if callable(out_dir) else out_dir
        domain = job.domain.name
        if domain not in versions:
            versions[domain] = code_version(domain)
        common = {"table": job.table, "name": job.name, "budget": job.budget}
        if finished_result(job, Path(folder), versions[domain]) is not None:
            estimates.append(
                CellEstimate(**common, iterations=0, seconds_per_iteration=0.0, reused=True)
            )
            continue
        if not_run_reason(job, data_root) is not None:
            estimates.append(CellEstimate(**common, iterations=0, seconds_per_iteration=0.0))
            continue
        try:
            measured = measure(config, device, data_root=data_root)
        except PluginError:  # the plug-in's factory fails: so will its job, named, at once
            estimates.append(CellEstimate(**common, iterations=0, seconds_per_iteration=0.0))
            continue
        estimates.append(
            CellEstimate(
                **common,
                iterations=config.budget.iterations,
                seconds_per_iteration=measured.seconds_per_iteration,
                overhead_s=overhead_s(config, measured, _n_eval_cells(config)),
            )
        )
    return estimates


# --------------------------------------------------------------------------- the suites


def suite_budgets(requested: str | None, on_gpu: bool) -> dict[str, str | None]:
    """The budget of each domain's tables in a suite run: ``{"regression": ..., "images": ...}``.

    Without ``--budget``: regression at ``quick``; images at ``quick`` on a GPU, else at
    ``cpu`` (32×32, a short run: see ``domains.images.configs``). An explicit budget is
    taken as asked for every table that has it: ``--budget quick`` on a CPU gives image
    cells at ``quick`` too (projected, and skipped past the bound with the reason). ``cpu``
    exists for the image tables only: regression is then None (its tests are skipped).
    """
    from hsmlbench.domains.images.configs import IMAGE_BUDGETS
    from hsmlbench.domains.regression.configs import BUDGETS

    if requested is None:
        return {"regression": "quick", "images": "quick" if on_gpu else "cpu"}
    image_budgets = set().union(*(b.keys() for b in IMAGE_BUDGETS.values()))
    return {
        "regression": requested if requested in BUDGETS else None,
        "images": requested if requested in image_budgets else None,
    }


def suite_how_to_run(budget: str) -> str:
    """How a skipped suite cell runs: the option that lifts the bound, at the same budget."""
    return (
        f"run it on a GPU, or with `--budget {budget} --max-cell-minutes 0` to lift the bound "
        "(an explicit `--budget paper` is never skipped)"
    )


@dataclass
class SuitePlan:
    """What a suite run will do: one decision per cell (in the order given), why each
    skipped cell is skipped, the jobs that cannot run for missing data, and the plan lines."""

    decisions: list[Decision]
    skipped: dict = field(default_factory=dict)  # Job → reason (projected past the bound)
    not_run: dict = field(default_factory=dict)  # Job → why (data missing)
    lines: list[str] = field(default_factory=list)


def plan_suite(
    jobs: Sequence,
    out_dir: Path | Callable[[str], Path],
    *,
    max_cell_minutes: float,
    explicit_paper: bool,
    on_gpu: Callable[[object], bool] = lambda job: job.device.startswith("cuda"),
    data_root=None,
    measure: Callable[..., Measurement] = measure,
    workers: int = 1,
    bounded: Callable[[object], bool] = lambda job: True,
) -> SuitePlan:
    """Estimates ``jobs`` (:func:`estimate_cells`), decides which run
    (``projection.decide``: a cell projected past ``max_cell_minutes`` on a CPU is skipped,
    unless ``explicit_paper``; 0 means no bound) and writes the plan lines
    (``projection.plan_lines``, on ``workers``: the suites run their cells one after
    another), with a line per table naming its cells that cannot run for missing data.
    ``on_gpu(job)``: whether the job computes on a GPU (default: its domain's device).
    ``bounded(job)``: whether the bound applies to the job at all (``reproduce``: regression
    cells only when the user gave ``--max-cell-minutes``).
    """
    jobs = list(jobs)
    estimates = estimate_cells(jobs, out_dir, data_root=data_root, measure=measure)
    bound_s = max_cell_minutes * 60 if max_cell_minutes else None
    decisions: list[Decision] = []
    for job, estimate in zip(jobs, estimates, strict=True):
        (decision,) = decide(
            [estimate],
            bound_s if bounded(job) else None,
            explicit_paper=explicit_paper,
            on_gpu=on_gpu(job),
            how_to_run=suite_how_to_run(job.budget),
        )
        decisions.append(decision)
    plan = SuitePlan(decisions)
    for job, estimate, decision in zip(jobs, estimates, decisions, strict=True):
        if decision.skipped:
            plan.skipped[job] = f"{job.name}: {decision.reason}"
        elif not estimate.reused and estimate.iterations == 0:
            why = not_run_reason(job, data_root)
            if why is not None:
                plan.not_run[job] = why
    lines = plan_lines(decisions, workers) if decisions else []
    for table in dict.fromkeys(job.table for job in plan.not_run):
        names = [job.name for job in plan.not_run if job.table == table]
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{table} ("))
        lines.insert(at + 1, f"  not run (data missing, recorded as such): {', '.join(names)}")
    plan.lines = lines
    return plan
