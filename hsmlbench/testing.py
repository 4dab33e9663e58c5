"""What a method plug-in's own tests need, with no import of hsmlbench's private modules
(docs/ADDING_A_METHOD.md §4).

- ``regression_batch``: a meta-batch of regression tasks from a seeded generator (float64 for
  gradient checks);
- ``cell_model``: a method's model as a table cell builds it (``run_config`` + ``build_model``);
- ``per_task_meta_loss``: an independent reference meta-loss, one task at a time, to check a
  method's batched meta-gradient against (with per-parameter rates and adapted-parameter flags).

``run_config``, ``build_model``, ``sample_tasks`` and ``task_generator`` are re-exported for
tests that need more than these.
"""

from __future__ import annotations

import torch

from hsmlbench.domains.regression.configs import RunConfig, run_config
from hsmlbench.domains.regression.tasks import TaskBatch, sample_tasks
from hsmlbench.methods.builtin import build_model
from hsmlbench.methods.meta_learner import MetaLearner
from hsmlbench.seeding import task_generator

__all__ = [
    "build_model",
    "cell_model",
    "per_task_meta_loss",
    "regression_batch",
    "run_config",
    "sample_tasks",
    "task_generator",
]


def regression_batch(
    n_tasks: int,
    k_shot: int,
    n_query: int = 10,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TaskBatch:
    """``n_tasks`` regression tasks (the four families of T1), ``k_shot`` support and
    ``n_query`` query points each, drawn from ``task_generator(seed)``: the same seed gives
    the same tasks on any machine. Fields: ``x_support``/``y_support`` [T, K, 1],
    ``x_query``/``y_query`` [T, Q, 1], ``n_tasks``."""
    return sample_tasks(n_tasks, k_shot, n_query, task_generator(seed), dtype=dtype)


def cell_model(
    method: str,
    *,
    table: str = "T1",
    setting: str = "5-shot",
    budget: str = "smoke",
    meta_step: str | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    settings: dict | None = None,
) -> tuple[MetaLearner, RunConfig]:
    """``(model, config)``: ``method``'s model for a table cell, as the grid builds it (torch
    seeded with ``seed`` first; ``dtype`` e.g. ``torch.float64`` converts it; ``settings``:
    a plug-in's settings other than its defaults, as ``--set`` gives them).

    ``meta_step`` ("fast" or "autograd"; None: ``HSMLBENCH_META_STEP`` or "fast") picks the
    meta-step path. Set ``HSMLBENCH_COMPILE=0`` in tests to keep the fast path eager."""
    config = run_config(table, method, setting, budget, meta_step=meta_step)
    if settings:
        import dataclasses

        if config.plugin_settings is None or set(settings) - set(config.plugin_settings):
            raise KeyError(f"{method!r} has no plug-in settings {sorted(settings)}")
        config = dataclasses.replace(config, plugin_settings={**config.plugin_settings, **settings})
    torch.manual_seed(seed)
    model = build_model(config)
    if dtype is not None:
        model = model.to(dtype)
    return model, config


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The ReLU MLP of one task, unbatched: weights [in, out], biases [out], x [N, in]."""
    h = x
    n_layers = len(params) // 2
    for layer in range(n_layers):
        h = h @ params[2 * layer] + params[2 * layer + 1]
        if layer < n_layers - 1:
            h = torch.relu(h)
    return h


def per_task_meta_loss(
    theta0: list[torch.Tensor],
    batch: TaskBatch,
    inner_lr: float | list[torch.Tensor],
    steps: int,
    adapted: tuple[bool, ...] | None = None,
) -> torch.Tensor:
    """The MAML meta-loss written plainly, as an independent reference: for each task in
    turn (unbatched tensors, a Python loop), ``steps`` second-order SGD steps on its support
    MSE from ``theta0`` (one tensor per base-learner parameter, without the task dimension),
    then its query MSE; the mean over tasks.

    ``inner_lr`` is one α, or one tensor per parameter (θ ← θ − α ∘ ∇L, Meta-SGD).
    ``adapted`` flags the parameters the inner loop steps (None: all); the others keep their
    ``theta0`` value. Differentiate the result with ``torch.autograd.grad`` and compare with
    the method's ``meta_loss`` on both meta-step paths, in float64."""
    flags = adapted if adapted is not None else (True,) * len(theta0)
    chosen = [j for j, flag in enumerate(flags) if flag]
    rates = inner_lr if isinstance(inner_lr, list) else [inner_lr] * len(theta0)
    losses = []
    for i in range(batch.n_tasks):
        params = list(theta0)
        for _ in range(steps if chosen else 0):
            support = ((_forward(params, batch.x_support[i]) - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(support, [params[j] for j in chosen], create_graph=True)
            for j, g in zip(chosen, grads):
                params[j] = params[j] - rates[j] * g
        losses.append(((_forward(params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean())
    return torch.stack(losses).mean()
