"""Meta-training on images: Adam, background episode loading, checkpoints and exact resume.

As ``hsmlbench.run.training`` (same checkpoint file, same non-finite stop, same progress line), with
image episodes built ahead of time by a background thread, a device (CUDA when available),
optional task chunking of the meta-batch for memory, and T4's stream and HSML-D growth.

Chunking splits the meta-batch into groups of ``task_chunk`` tasks and back-propagates each
group's share of the loss in turn; batch norm is per task, so the meta-gradient is the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hsmlbench.atomic import save_torch
from hsmlbench.domains.images.configs import ImageRunConfig
from hsmlbench.domains.images.continual import active_datasets, should_grow
from hsmlbench.domains.images.episodes import (
    BackgroundLoader,
    EpisodeSampler,
    ImageEpisodeBatch,
    episode_generator,
)
from hsmlbench.domains.images.layout import ImageSplit
from hsmlbench.domains.images.models import ImageMetaLearner, build_image_model
from hsmlbench.progress import Progress
from hsmlbench.run.training import CHECKPOINT, NonFiniteLossError, load_checkpoint
from hsmlbench.seeding import seed_everything


@dataclass
class ImageTrainResult:
    model: ImageMetaLearner
    losses: list[float]  # meta-loss per iteration
    query_accuracies: list[float]  # mean post-adaptation query accuracy (%) per iteration
    wall_time_s: float
    events: list[dict] = field(default_factory=list)
    peak_gpu_mb: float | None = None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def meta_step(
    model: ImageMetaLearner, batch: ImageEpisodeBatch, steps: int, task_chunk: int | None = None
) -> tuple[float, torch.Tensor]:
    """Forward and backward of one meta-batch (gradients accumulate into ``.grad``).

    Returns ``(meta-loss, per-task query accuracy)``.
    """
    n = batch.n_tasks
    size = n if task_chunk is None else max(1, task_chunk)
    total, accuracies = 0.0, []
    for start in range(0, n, size):
        chunk = batch.slice(start, min(start + size, n))
        loss, _, accuracy = model.meta_loss_and_accuracy(chunk, steps)
        (loss * (chunk.n_tasks / n)).backward()
        total += loss.item() * chunk.n_tasks / n
        accuracies.append(accuracy.detach())
    return total, torch.cat(accuracies)


def make_optimizer(model: ImageMetaLearner, config: ImageRunConfig) -> torch.optim.Adam:
    groups = model.optimizer_groups() if hasattr(model, "optimizer_groups") else model.parameters()
    return torch.optim.Adam(groups, lr=config.outer_lr)


def _training_seed(seed: int) -> int:
    return 1_000_003 * (seed + 1)


def train_image_model(
    config: ImageRunConfig,
    seed: int,
    train_splits: list[ImageSplit],
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    device: torch.device | str | None = None,
) -> ImageTrainResult:
    """Meta-trains ``config.method`` on ``train_splits`` (one per dataset, in ``config.datasets`` order)."""
    device = torch.device(device) if device is not None else default_device()
    seed_everything(seed)
    model = build_image_model(config).to(device)
    optimizer = make_optimizer(model, config)
    losses: list[float] = []
    accuracies: list[float] = []
    events: list[dict] = []
    start, elapsed_before = 0, 0.0
    checkpoint = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    state = None
    if resume:
        state, optimizer = load_checkpoint(
            checkpoint, config, seed, model, optimizer, make_optimizer, map_location=device
        )
    if resume and state is not None:  # None: no readable checkpoint, trained from scratch
        torch.set_rng_state(state["torch_rng"])
        start, losses, accuracies = state["iteration"], state["losses"], state["query_accuracies"]
        events, elapsed_before = state.get("events", []), state.get("wall_time_s", 0.0)

    total = config.budget.iterations
    end = total if stop_after is None else min(total, stop_after)
    sampler = EpisodeSampler(train_splits, config.n_way, config.k_shot, config.n_query_train)
    base_seed = _training_seed(seed)

    def make(iteration: int) -> ImageEpisodeBatch:
        active = active_datasets(config.continual, len(train_splits), iteration, total)
        return sampler.batch(config.meta_batch, episode_generator(base_seed, iteration), active)

    grows = config.continual is not None and config.continual.grow and hasattr(model, "add_cluster")
    bar = Progress(f"{config.job_name} seed {seed}", total, start, enabled=progress)
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
            "torch_rng": torch.get_rng_state(),
            "losses": losses,
            "query_accuracies": accuracies,
            "events": events,
            "growth": model.growth_state() if hasattr(model, "growth_state") else {},
            "wall_time_s": elapsed_before + time.perf_counter() - t0,
        }

    model.train()
    loader = BackgroundLoader(make, start, end, pin_memory=device.type == "cuda")
    try:
        for iteration, batch in loader:
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, accuracy = meta_step(model, batch, config.inner_steps_train, config.task_chunk)
            if not torch.isfinite(torch.tensor(loss)):
                where = (
                    f"the last good checkpoint is {checkpoint}"
                    if checkpoint is not None and checkpoint.exists()
                    else "no checkpoint was written yet"
                )
                raise NonFiniteLossError(
                    f"{config.job_name} seed {seed}: meta-loss is {loss} at iteration {iteration}; {where}."
                )
            if config.outer_grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.outer_grad_clip)
            optimizer.step()
            losses.append(loss)
            accuracies.append(accuracy.mean().item())
            done = iteration + 1
            if grows and should_grow(
                accuracies, done, model.last_addition, config.continual, total
            ):
                optimizer.add_param_group({"params": model.add_cluster()})
                model.last_addition = done
                window = config.continual.window_at(total)
                events.append(
                    {
                        "event": "cluster_added",
                        "iteration": done,
                        "window_accuracy": sum(accuracies[-window:]) / window,
                        "previous_window_accuracy": sum(accuracies[-2 * window : -window]) / window,
                        "n_clusters": model.tree.n_clusters,
                    }
                )
            bar.update(done, loss)
            if checkpoint is not None and (
                done % config.budget.checkpoint_every == 0 or done == end
            ):
                save_torch(checkpoint, snapshot(done))
    finally:
        loader.close()
    bar.close(end, losses[-1] if losses else float("nan"))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return ImageTrainResult(
        model, losses, accuracies, elapsed_before + time.perf_counter() - t0, events, peak
    )
