"""A deliberately plain per-task image MAML: one task at a time, ordinary convolutions, a loop.

The independent reference the grouped-convolution learner is tested against (same math, none of
the batching): each task's forward is conv → batch norm over that task's images → ReLU →
max-pool, four times, then a linear layer; the loss is Σ cross-entropy / K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def single_task_logits(
    params: list[torch.Tensor],
    x: torch.Tensor,
    bn_offsets: torch.Tensor,
    eps: float,
    film: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """x [N, C, H, W] → logits [N, n_way] for one task's parameters (no task dimension)."""
    h = x
    for block in range(4):
        h = F.conv2d(h, params[2 * block], params[2 * block + 1], padding=1)
        mean = h.mean(dim=(0, 2, 3), keepdim=True)
        var = h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + eps) + bn_offsets[block].view(1, -1, 1, 1)
        if film is not None:
            gamma, beta = film[block]
            h = h * (1 + gamma.view(1, -1, 1, 1)) + beta.view(1, -1, 1, 1)
        h = F.max_pool2d(torch.relu(h), 2)
    return h.flatten(1) @ params[-2] + params[-1]


def per_task_image_maml_meta_loss(
    theta0: list[torch.Tensor],
    batch,
    inner_lr: float,
    steps: int,
    k_shot: int,
    bn_offsets: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Mean over tasks of Σ query CE / K after ``steps`` second-order SGD steps on Σ support CE / K."""
    losses = []
    for i in range(batch.n_tasks):
        params = list(theta0)
        for _ in range(steps):
            logits = single_task_logits(params, batch.x_support[i], bn_offsets, eps)
            support = F.cross_entropy(logits, batch.y_support[i], reduction="sum") / k_shot
            grads = torch.autograd.grad(support, params, create_graph=True)
            params = [p - inner_lr * g for p, g in zip(params, grads)]
        logits = single_task_logits(params, batch.x_query[i], bn_offsets, eps)
        losses.append(F.cross_entropy(logits, batch.y_query[i], reduction="sum") / k_shot)
    return torch.stack(losses).mean()
