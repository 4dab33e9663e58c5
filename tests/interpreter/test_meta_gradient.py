"""Second-order MAML through the dispatched ops equals the same computation through the twins.

This is the ``once_differentiable`` claim (STYLE.md, Kernels): the tree and the gate run once
per task, before the inner loop, so the inner loop's second-order terms only differentiate
the base learner twice; the kernels' backward runs once, in the outer backward.
"""

from __future__ import annotations

import pytest
import torch
from hsmlbench.kernels import gated_init, gated_init_torch, soft_assign_tree, soft_assign_tree_torch
from hsmlbench.kernels.bench import gate_inputs, tree_inputs
from hsmlbench.kernels.dispatch import use_triton

B, D, K1, HIDDEN = 3, 6, 3, 8
P = HIDDEN + HIDDEN + HIDDEN + 1  # MLP 1 → HIDDEN → 1: w1, b1, w2, b2
SIGMA, ALPHA, STEPS = 2.0, 0.3, 2


def _mlp(theta, x):
    """Batched functional MLP 1 → HIDDEN → 1; theta [B, P], x [B, N, 1]."""
    w1 = theta[:, :HIDDEN].unsqueeze(1)
    b1 = theta[:, HIDDEN : 2 * HIDDEN].unsqueeze(1)
    w2 = theta[:, 2 * HIDDEN : 3 * HIDDEN].unsqueeze(2)
    b2 = theta[:, 3 * HIDDEN :].unsqueeze(1)
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def _mse(theta, x, y):
    return ((_mlp(theta, x) - y) ** 2).mean(dim=(1, 2))  # per task


def _meta_gradient(tree_op, gate_op, second_order=True):
    """HSML's gated initialisation, STEPS inner SGD steps per task, query loss → meta-gradient."""
    tree = tree_inputs(B, D, K1, dtype=torch.float64, seed=21, requires_grad=True)
    _, gw, gb, theta0 = gate_inputs(B, 2 * D, P, dtype=torch.float64, seed=22, requires_grad=True)
    with torch.no_grad():
        theta0.mul_(0.7)
    gen = torch.Generator().manual_seed(23)
    xs = torch.rand((B, 5, 1), generator=gen, dtype=torch.float64) * 4 - 2
    xq = torch.rand((B, 10, 1), generator=gen, dtype=torch.float64) * 4 - 2
    amp = torch.rand((B, 1, 1), generator=gen, dtype=torch.float64) + 0.5
    ys, yq = amp * torch.sin(xs), amp * torch.sin(xq)

    p, q, root = tree_op(*tree, SIGMA)
    z = torch.cat([tree[0], root], dim=1)  # z = [h; h_root]
    theta = gate_op(z, gw, gb, theta0)
    for _ in range(STEPS):
        inner = _mse(theta, xs, ys).sum()  # tasks are independent: the sum's gradient is per task
        (grad,) = torch.autograd.grad(inner, theta, create_graph=second_order)
        theta = theta - ALPHA * grad
    # also put p and q in the loss so their cotangents reach the kernels' backward
    loss = _mse(theta, xq, yq).mean() + 0.1 * (p**2).sum() + 0.1 * (q[..., 0] ** 2).sum()
    wrt = (z, gw, gb, theta0, *tree)
    return loss, torch.autograd.grad(loss, wrt), theta


NAMES = [
    "z",
    "gate_w",
    "gate_b",
    "theta0",
    "h",
    "centres",
    "w1",
    "b1",
    "w2",
    "b2",
    "u",
    "ub",
    "r",
    "rb",
]


def test_second_order_meta_gradient_matches_twins(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_KERNELS", "triton")
    assert use_triton(torch.zeros(1)), "the dispatched ops must take the Triton path here"
    loss, grads, theta = _meta_gradient(soft_assign_tree, gated_init)
    # the adapted parameters' graph starts at the Triton autograd Function
    node = theta.grad_fn
    while node is not None and "GatedInit" not in type(node).__name__:
        node = node.next_functions[0][0] if node.next_functions else None
    assert node is not None and type(node).__name__ == "GatedInitFunctionBackward"

    t_loss, t_grads, _ = _meta_gradient(soft_assign_tree_torch, gated_init_torch)
    torch.testing.assert_close(loss, t_loss, rtol=1e-12, atol=1e-14)
    for name, got, want in zip(NAMES, grads, t_grads, strict=True):
        assert want.abs().max() > 0, f"{name}: the meta-gradient should not vanish here"
        torch.testing.assert_close(
            got, want, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_second_order_terms_matter():
    """Guard for the test above: first-order MAML gives a clearly different meta-gradient,
    so agreement there really covers the second-order terms."""
    _, second, _ = _meta_gradient(soft_assign_tree_torch, gated_init_torch, second_order=True)
    _, first, _ = _meta_gradient(soft_assign_tree_torch, gated_init_torch, second_order=False)
    diff = max(
        ((a - b).abs().max() / a.abs().max()).item() for a, b in zip(second, first, strict=True)
    )
    assert diff > 1e-3


def test_double_backward_through_kernel_is_refused(monkeypatch):
    """The kernels are once-differentiable: differentiating their backward raises."""
    monkeypatch.setenv("HSMLBENCH_KERNELS", "triton")
    z, w, b, th0 = gate_inputs(2, 4, 3, dtype=torch.float64, seed=1, requires_grad=True)
    (gz,) = torch.autograd.grad(gated_init(z, w, b, th0).pow(2).sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gz.sum().backward()


def test_forcing_torch_takes_the_twin(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_KERNELS", "torch")
    z, w, b, th0 = gate_inputs(2, 4, 3, dtype=torch.float64, seed=1, requires_grad=True)
    assert "GatedInit" not in type(gated_init(z, w, b, th0).grad_fn).__name__
