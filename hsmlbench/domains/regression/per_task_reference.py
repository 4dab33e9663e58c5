"""A deliberately plain per-task MAML: one task at a time, unbatched tensors, a Python loop.

It is the independent reference the batched implementation is tested against (same math,
none of the batching), and the baseline of the batching speed benchmark.
"""

from __future__ import annotations

import torch

from hsmlbench.domains.regression.tasks import TaskBatch


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(x @ w1 + b1)
    h = torch.relu(h @ w2 + b2)
    return h @ w3 + b3


def per_task_maml_meta_loss(
    theta0: list[torch.Tensor],
    batch: TaskBatch,
    inner_lr: float | list[torch.Tensor],
    steps: int,
) -> torch.Tensor:
    """Mean over tasks of the query MSE after ``steps`` second-order SGD steps.

    ``inner_lr`` is one α, or one tensor per parameter (Meta-SGD's θ ← θ − α ∘ ∇L)."""
    rates = inner_lr if isinstance(inner_lr, list) else [inner_lr] * len(theta0)
    losses = []
    for i in range(batch.n_tasks):
        params = list(theta0)
        for _ in range(steps):
            support = ((_forward(params, batch.x_support[i]) - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(support, params, create_graph=True)
            params = [p - a * g for p, a, g in zip(params, rates, grads)]
        losses.append(((_forward(params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean())
    return torch.stack(losses).mean()
