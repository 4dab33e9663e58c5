"""Gated initialization θ_i = θ0 ∘ σ(z_i W + b) for a batch of tasks (docs/PROTOCOL.md §3 step 3).

Shapes: z [B, Z], weight [Z, P], bias [P], theta0 [P] → theta [B, P]. All of a base learner's
tensors are flattened and concatenated into P so one launch gates them all.
"""

from __future__ import annotations

import torch
from hsmlbench.kernels.dispatch import use_triton


def gated_init_torch(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, theta0: torch.Tensor
) -> torch.Tensor:
    """Pure-torch twin: the reference the Triton kernel is tested against."""
    return theta0 * torch.sigmoid(torch.addmm(bias, z, weight))


def gated_init(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, theta0: torch.Tensor
) -> torch.Tensor:
    """Dispatched op: the fused Triton kernel on CUDA tensors, else the torch twin."""
    if use_triton(z):
        from hsmlbench.kernels._gated_init_triton import gated_init_triton

        return gated_init_triton(z, weight, bias, theta0)
    return gated_init_torch(z, weight, bias, theta0)
