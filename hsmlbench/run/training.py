"""Meta-training for every domain: Adam, atomic checkpoints, exact resume, a stop on NaN.

One loop serves regression and images; the domain (``hsmlbench.domains``) draws the
meta-batches and runs the forward and backward of one meta-step. A run directory holds
``checkpoint.pt`` (latest) and ``checkpoint.previous.pt`` (the one before, until the latest is
safely written). Resuming restores the model, the optimizer, the task stream and the loss
history, so a resumed run ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hsmlbench.atomic import save_torch, set_aside
from hsmlbench.run.numerics import apply_numerics_policy
from hsmlbench.run.progress import Progress
from hsmlbench.seeding import seed_everything

CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The meta-loss became NaN or inf at ``iteration``; the last good checkpoint is kept."""

    def __init__(self, message: str, iteration: int | None = None) -> None:
        super().__init__(message)
        self.iteration = iteration


class CheckpointOfAnotherRun(ValueError):
    """The run folder's checkpoint is of another config or seed (``hsmlbench train`` refuses
    it; a grid job sets it aside and starts afresh)."""


@dataclass
class TrainResult:
    model: torch.nn.Module
    losses: list[float]  # meta-loss per iteration
    # mean post-adaptation query metric per iteration (regression: MSE; images: accuracy %)
    query_metric: list[float]
    wall_time_s: float
    events: list[dict] = field(default_factory=list)  # e.g. clusters added (HSML-D)
    meta_step: str = "autograd"  # what computed the meta-step (meta_step_implementation)
    peak_gpu_mb: float | None = None


# A run shorter than this keeps the fast meta-step uncompiled: compiling costs 20-40 s on a
# 2-core CPU, more than it saves over a few hundred iterations (same math either way).
MIN_ITERATIONS_TO_COMPILE = 1_000


def clip_outer_gradient(model, max_norm: float, groups: str | None) -> None:
    """Clips the meta-gradient's norm to ``max_norm``: all parameters as one vector ("joint",
    None), or the base learner's θ0 and everything else (task encoder, heads) each on its own
    ("separate", as the MUMOMAML authors' code does)."""
    if groups in (None, "joint"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return
    if groups != "separate":
        raise ValueError(f"outer_clip_groups={groups!r}: choose 'joint' or 'separate'")
    base = (
        {id(p) for p in model.theta0.parameters()}
        if isinstance(model.theta0, torch.nn.Module)
        else {id(model.theta0)}
    )
    learner = [p for p in model.parameters() if id(p) in base]
    rest = [p for p in model.parameters() if id(p) not in base]
    for group in (learner, rest):
        if group:
            torch.nn.utils.clip_grad_norm_(group, max_norm)


def make_optimizer(model, config) -> torch.optim.Optimizer:
    """One Adam over everything (docs/PROTOCOL.md §3); growing models split it into groups.

    The fast meta-step takes torch's fused Adam (one kernel for every parameter, the same
    update rule); the autograd path keeps the default implementation, as before."""
    groups = model.optimizer_groups() if hasattr(model, "optimizer_groups") else model.parameters()
    fused = getattr(config, "meta_step", "autograd") == "fast"
    return torch.optim.Adam(groups, lr=config.outer_lr, fused=fused or None)


def load_checkpoint(
    checkpoint: Path | None,
    config,
    seed: int,
    model,
    optimizer: torch.optim.Optimizer,
    optimizer_factory,
) -> tuple[dict, torch.optim.Optimizer]:
    """Restores model and optimizer from ``checkpoint`` for ``--resume``; returns the raw state
    (iteration, loss history, RNG states) and the optimizer, rebuilt when the model grew.

    Refuses a checkpoint of another run (different config or seed) or a missing one, naming the fix.
    """
    previous = previous_checkpoint(checkpoint) if checkpoint is not None else None
    if checkpoint is None or not (checkpoint.exists() or (previous and previous.exists())):
        raise FileNotFoundError(
            f"--resume: no checkpoint at {checkpoint}; start the run without --resume"
        )
    state = _read_checkpoint(checkpoint)
    if state is None and previous.exists():
        state = _read_checkpoint(previous)
        if state is not None:
            print(
                f"hsmlbench: resuming from the previous checkpoint {previous} "
                f"(iteration {state['iteration']})",
                file=sys.stderr,
                flush=True,
            )
    if state is None:
        print(
            f"hsmlbench: no readable checkpoint in {checkpoint.parent}; training from scratch",
            file=sys.stderr,
            flush=True,
        )
        return None, optimizer
    if not config.matches(state["config"]) or state["seed"] != seed:
        raise CheckpointOfAnotherRun(
            f"{checkpoint} belongs to another run (different config or seed); "
            "use another run directory or drop --resume"
        )
    if hasattr(model, "load_growth_state"):
        model.load_growth_state(state.get("growth", {}))
        optimizer = optimizer_factory(model, config)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state, optimizer


CHECKPOINT_KEYS = ("config", "seed", "iteration", "model", "optimizer", "torch_rng")


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before the latest is kept until the latest is safely written."""
    return path.with_name(path.stem + ".previous" + path.suffix)


def _read_checkpoint(path: Path) -> dict | None:
    """The checkpoint's state, or None after setting an unreadable one aside (named).

    Always read onto the CPU, whatever device saved it or resumes it: ``load_state_dict``
    copies model and optimizer tensors to the devices of the live parameters, and the RNG
    states must stay CPU byte tensors (``torch.set_rng_state`` takes nothing else)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except Exception as error:  # noqa: BLE001 - truncated, empty, random bytes, wrong object
        set_aside(path, f"not a readable checkpoint ({type(error).__name__})")
        return None
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    """The new checkpoint is written atomically; the one before is kept as
    ``checkpoint.previous.pt`` so that a damaged latest one still leaves a good one."""
    if path.exists():
        os.replace(path, previous_checkpoint(path))
    save_torch(path, state)


def train(
    config,
    seed: int,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    *,
    data_root=None,
    device=None,
) -> TrainResult:
    """Meta-trains ``config.method`` for ``config.budget.iterations`` iterations on the tasks
    of ``config.table``'s domain.

    ``run_dir`` enables checkpoints every ``budget.checkpoint_every`` iterations (and at the
    end); ``resume`` continues from its checkpoint. ``stop_after`` ends early after that many
    iterations (tests use it to simulate an interruption). ``data_root``: where the image
    datasets are; ``device``: default, the domain's (CUDA for images when there is one).
    """
    from hsmlbench.domains import domain_for

    domain = domain_for(config.table)
    device = domain.device(device)
    apply_numerics_policy()  # full float32 on a GPU unless HSMLBENCH_ALLOW_TF32=1
    seed_everything(seed)
    model = domain.build_model(config).to(device)
    if config.budget.iterations < MIN_ITERATIONS_TO_COMPILE and hasattr(model, "compile_meta_step"):
        model.compile_meta_step = False
    optimizer = make_optimizer(model, config)
    stream = domain.training_stream(config, seed, data_root, device)
    losses: list[float] = []
    query_metric: list[float] = []
    events: list[dict] = []
    start, elapsed_before = 0, 0.0
    previous_meta_step = None  # what computed the iterations before a resume
    checkpoint = Path(run_dir) / CHECKPOINT if run_dir is not None else None

    state = None
    if resume:
        state, optimizer = load_checkpoint(
            checkpoint, config, seed, model, optimizer, make_optimizer
        )
    if state is not None:  # None: no readable checkpoint, trained from scratch
        stream.restore(state.get("generator"))
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start, losses = state["iteration"], state["losses"]
        query_metric = state.get("query_metric", state.get("query_losses", []))
        events, elapsed_before = state.get("events", []), state.get("wall_time_s", 0.0)
        previous_meta_step = state.get("meta_step")

    total = config.budget.iterations
    end = total if stop_after is None else min(total, stop_after)
    bar = Progress(config.job_name + f" seed {seed}", total, start, enabled=progress)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()

    def snapshot(iteration: int) -> dict:
        return {
            "config": config.to_dict(),
            "seed": seed,
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": stream.state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "losses": losses,
            "query_metric": query_metric,
            "events": events,
            "meta_step": meta_step_record(model, previous_meta_step),
            "growth": model.growth_state() if hasattr(model, "growth_state") else {},
            "wall_time_s": elapsed_before + time.perf_counter() - t0,
        }

    model.train()
    try:
        for iteration, batch in stream.batches(start, end):
            optimizer.zero_grad(set_to_none=True)
            loss_value, query = domain.meta_step(model, batch, config)
            if not math.isfinite(loss_value):  # a float: no tensor made per step
                where = (
                    f"the last good checkpoint is {checkpoint}"
                    if checkpoint is not None and checkpoint.exists()
                    else "no checkpoint was written yet"
                )
                raise NonFiniteLossError(
                    f"{config.job_name} seed {seed}: meta-loss is {loss_value} at iteration "
                    f"{iteration}; {where}. Lower the outer learning rate or check the task data.",
                    iteration,
                )
            if config.outer_grad_clip is not None:
                groups = getattr(config, "outer_clip_groups", None)
                clip_outer_gradient(model, config.outer_grad_clip, groups)
            optimizer.step()
            losses.append(loss_value)
            query_metric.append(query.mean().item())
            if hasattr(model, "after_iteration"):
                optimizer = model.after_iteration(iteration, query_metric, optimizer, events)
            done = iteration + 1
            bar.update(done, loss_value)
            if checkpoint is not None and (
                done % config.budget.checkpoint_every == 0 or done == end
            ):
                _save_checkpoint(checkpoint, snapshot(done))
    finally:
        stream.close()
    bar.close(end, losses[-1] if losses else float("nan"))
    wall = elapsed_before + time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return TrainResult(
        model,
        losses,
        query_metric,
        wall,
        events,
        meta_step_record(model, previous_meta_step),
        peak,
    )


def meta_step_record(model, before_resume: str | None) -> str:
    """What computed this run's meta-steps, across resumes: a process that resumed a finished
    checkpoint ran none, and one whose compiler failed after a resume ran another way."""
    implementation = getattr(model, "meta_step_implementation", "autograd")
    now = implementation if getattr(model, "meta_step_called", True) else None
    if before_resume is None or now in (None, before_resume):
        return now or before_resume or implementation
    return f"{before_resume}; after resuming: {now}"
