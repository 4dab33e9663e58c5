"""A deliberately plain per-task MAML: one task at a time, unbatched tensors, a Python loop.

It is the independent reference the batched implementation is tested against (same math,
none of the batching), and the baseline of the batching speed benchmark.
"""

from __future__ import annotations

import torch

from hsmlbench.tasks import TaskBatch


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(x @ w1 + b1)
    h = torch.relu(h @ w2 + b2)
    return h @ w3 + b3


def per_task_maml_meta_loss(
    theta0: list[torch.Tensor], batch: TaskBatch, inner_lr: float, steps: int
) -> torch.Tensor:
    """Mean over tasks of the query MSE after ``steps`` second-order SGD steps."""
    losses = []
    for i in range(batch.n_tasks):
        params = list(theta0)
        for _ in range(steps):
            support = ((_forward(params, batch.x_support[i]) - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(support, params, create_graph=True)
            params = [p - inner_lr * g for p, g in zip(params, grads)]
        losses.append(((_forward(params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean())
    return torch.stack(losses).mean()
