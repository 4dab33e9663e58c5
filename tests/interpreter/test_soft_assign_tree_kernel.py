"""The soft_assign_tree Triton kernels against their torch twin, run by Triton's interpreter."""

from __future__ import annotations

import pytest
import torch
from hsmlbench.kernels._soft_assign_tree_triton import soft_assign_tree_triton
from hsmlbench.kernels.bench import tree_inputs
from hsmlbench.kernels.soft_assign_tree import soft_assign_tree_torch

# every B in {1, 3, 25}, d in {40, 128}, K1 in {2, 3, 4, 10} at least once; K2 = 2 (HSML)
SHAPES = [(1, 40, 2), (3, 128, 3), (25, 40, 4), (3, 40, 10), (1, 128, 10)]
# not representable in float32: a float64 kernel that took σ as float32 would be off by ~1e-8
SIGMA = 1.3
NAMES = ["h", "centres", "w1", "b1", "w2", "b2", "u", "ub", "r", "rb"]


def _forward_backward(fn, inputs, cotangents):
    outs = fn(*inputs, SIGMA)
    grads = torch.autograd.grad(outs, inputs, cotangents)
    return outs, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("B,d,K1", SHAPES, ids=[f"B{b}-d{d}-K{k}" for b, d, k in SHAPES])
def test_matches_twin(B, d, K1, dtype, assert_matches_twin):
    seed = 100 * B + d + K1
    inputs = tree_inputs(B, d, K1, dtype=dtype, seed=seed, requires_grad=True)
    ref_inputs = tree_inputs(B, d, K1, dtype=torch.float64, seed=seed, requires_grad=True)
    gen = torch.Generator().manual_seed(seed + 1)
    shapes = [(B, K1), (B, K1, 2), (B, d)]
    cot64 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    cot = [c.to(dtype) for c in cot64]

    outs, grads = _forward_backward(soft_assign_tree_triton, inputs, cot)
    t_outs, t_grads = _forward_backward(soft_assign_tree_torch, inputs, cot)
    r_outs, r_grads = _forward_backward(soft_assign_tree_torch, ref_inputs, cot64)

    for name, got, twin, ref in zip(["p", "q", "root"], outs, t_outs, r_outs, strict=True):
        assert_matches_twin(name, got, twin, ref)
    for name, got, twin, ref in zip(NAMES, grads, t_grads, r_grads, strict=True):
        assert_matches_twin(f"d{name}", got, twin, ref)


def test_assignments_are_distributions():
    """p rows and q rows are probability vectors; padding rows of the blocks never leak in."""
    inputs = tree_inputs(3, 40, 3, dtype=torch.float64, seed=7)
    p, q, _ = soft_assign_tree_triton(*inputs, SIGMA)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(q.sum(-1), torch.ones(3, 3, dtype=torch.float64))
    assert (p > 0).all() and (q > 0).all()


def test_gradcheck_fp64():
    """Analytic kernel gradients against finite differences of the kernel itself (fp64).

    Tiny on purpose (every element of every input is perturbed, in the interpreter); K1 = 3
    and d = 3 still leave padded block rows and columns that must not leak.
    """
    inputs = tree_inputs(1, 3, 3, dtype=torch.float64, seed=3, requires_grad=True)
    # larger weights so tanh and the softmaxes are away from their linear regimes
    with torch.no_grad():
        for t in inputs[2:]:
            t.mul_(2.0)
    assert torch.autograd.gradcheck(
        lambda *xs: soft_assign_tree_triton(*xs, SIGMA), inputs, atol=1e-8, rtol=1e-6
    )


def test_half_inputs_run_in_float32():
    inputs = tree_inputs(3, 40, 4, dtype=torch.float16, seed=5)
    outs = soft_assign_tree_triton(*inputs, SIGMA)
    ref = soft_assign_tree_torch(*(t.float() for t in inputs), SIGMA)
    for got, want in zip(outs, ref, strict=True):
        assert got.dtype == torch.float16
        torch.testing.assert_close(got.float(), want, rtol=2e-3, atol=2e-3)
