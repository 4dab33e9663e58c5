"""Functional base learners whose parameters carry a leading task dimension (PAPER.md §3).

A parameter set is a tuple of tensors ``[T, *shape]``; one forward serves a whole meta-batch
with batched matmuls, so no Python loop over tasks runs on the hot path.
"""

from __future__ import annotations

import math

import torch

Params = tuple[torch.Tensor, ...]

MLP_SIZES = (1, 40, 40, 1)  # PAPER.md §3 "Base learner"


def mlp_shapes(sizes: tuple[int, ...] = MLP_SIZES) -> list[tuple[int, ...]]:
    """Shapes of (w1, b1, w2, b2, ...), weights stored [in, out]."""
    shapes: list[tuple[int, ...]] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def init_mlp(sizes: tuple[int, ...] = MLP_SIZES, std: float = 0.01) -> list[torch.Tensor]:
    """Truncated normal (±2 std, as TensorFlow's) weights with std 0.01 and zero biases."""
    tensors = []
    for shape in mlp_shapes(sizes):
        t = torch.zeros(shape)
        if len(shape) == 2:
            torch.nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)
        tensors.append(t)
    return tensors


def mlp_forward(
    params: Params,
    x: torch.Tensor,
    film: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
) -> torch.Tensor:
    """ReLU MLP over a batch of tasks: x [T, N, in] → [T, N, out].

    ``film`` optionally gives one (γ, β) pair [T, width] per hidden layer: a ← a·(1 + γ) + β
    after the linear map and before the ReLU (MUMOMAML, PAPER.md §3).
    """
    n_layers = len(params) // 2
    h = x
    for layer in range(n_layers):
        w, b = params[2 * layer], params[2 * layer + 1]
        h = torch.baddbmm(b.unsqueeze(1), h, w)
        if layer < n_layers - 1:
            if film is not None:
                gamma, beta = film[layer]
                h = torch.addcmul(beta.unsqueeze(1), h, 1.0 + gamma.unsqueeze(1))
            h = torch.relu(h)
    return h


def mse_per_task(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each task: [T, N, 1] → [T]."""
    return (prediction - target).pow(2).flatten(1).mean(1)


def glorot_uniform_(t: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-bound, bound)
