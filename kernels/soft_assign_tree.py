"""Batched soft cluster assignment and HSML's cluster tree (docs/PROTOCOL.md §3 step 2).

Shapes (B tasks, d features, K1 level-1 clusters, K2 level-2 clusters); every linear map is
applied as ``x @ W`` (input dimension first, as in the authors' TensorFlow code):

    h        [B, d]       task vectors
    centres  [K1, d]      level-1 cluster centres
    w1, b1   [K1, d, d], [K1, d]   level-1 node transforms
    w2, b2   [d, K2], [K2]         level-2 assignment logits
    u, ub    [K2, d, d], [K2, d]   level-2 node transforms
    r, rb    [d, d], [d]           root transform
    sigma    float                 bandwidth: the code divides by 2σ, not 2σ² (docs/PROTOCOL.md §3)

Returns ``(p [B, K1], q [B, K1, K2], root [B, d])``.
"""

from __future__ import annotations

import torch
from hsmlbench.kernels.dispatch import use_triton


def soft_assign_tree_torch(
    h: torch.Tensor,
    centres: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    u: torch.Tensor,
    ub: torch.Tensor,
    r: torch.Tensor,
    rb: torch.Tensor,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-torch twin: the reference the Triton kernels are tested against."""
    sq_dist = ((h[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # [B, K1]
    p = torch.softmax(-sq_dist / (2.0 * sigma), dim=-1)
    node1 = p[..., None] * torch.tanh(torch.einsum("bd,kde->bke", h, w1) + b1)  # [B, K1, d]
    q = torch.softmax(node1 @ w2 + b2, dim=-1)  # [B, K1, K2]
    transformed = torch.tanh(torch.einsum("bkd,jde->bkje", node1, u) + ub)  # [B, K1, K2, d]
    node2 = (q[..., None] * transformed).sum(1)  # [B, K2, d]
    root = torch.tanh(node2 @ r + rb).sum(1)  # [B, d]
    return p, q, root


def soft_assign_tree(
    h: torch.Tensor,
    centres: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    u: torch.Tensor,
    ub: torch.Tensor,
    r: torch.Tensor,
    rb: torch.Tensor,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dispatched op: the fused Triton kernel on CUDA tensors, else the torch twin."""
    if use_triton(h):
        from hsmlbench.kernels._soft_assign_tree_triton import soft_assign_tree_triton

        return soft_assign_tree_triton(h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma)
    return soft_assign_tree_torch(h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma)
