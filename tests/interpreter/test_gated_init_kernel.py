"""The gated_init Triton kernels against their torch twin, run by Triton's interpreter."""

from __future__ import annotations

import pytest
import torch
from hsmlbench.kernels._gated_init_triton import gated_init_triton
from hsmlbench.kernels.bench import gate_inputs
from hsmlbench.kernels.gated_init import gated_init_torch

# every B in {1, 3, 25}, Z = 2d in {80, 256}, P in {1, 1761, 4097} at least once
SHAPES = [(1, 80, 1), (3, 256, 1761), (25, 80, 4097), (25, 256, 1), (3, 80, 4097)]
NAMES = ["z", "weight", "bias", "theta0"]


def _forward_backward(fn, inputs, cotangent):
    out = fn(*inputs)
    return out, torch.autograd.grad(out, inputs, cotangent)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("B,Z,P", SHAPES, ids=[f"B{b}-Z{z}-P{p}" for b, z, p in SHAPES])
def test_matches_twin(B, Z, P, dtype, assert_matches_twin):
    seed = B + Z + P
    inputs = gate_inputs(B, Z, P, dtype=dtype, seed=seed, requires_grad=True)
    ref_inputs = gate_inputs(B, Z, P, dtype=torch.float64, seed=seed, requires_grad=True)
    cot64 = torch.randn((B, P), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    out, grads = _forward_backward(gated_init_triton, inputs, cot64.to(dtype))
    t_out, t_grads = _forward_backward(gated_init_torch, inputs, cot64.to(dtype))
    r_out, r_grads = _forward_backward(gated_init_torch, ref_inputs, cot64)

    assert_matches_twin("theta", out, t_out, r_out)
    for name, got, twin, ref in zip(NAMES, grads, t_grads, r_grads, strict=True):
        assert_matches_twin(f"d{name}", got, twin, ref)


def test_batch_above_one_tile():
    """B > 64 runs the backward in batch chunks whose parameter gradients are summed."""
    inputs = gate_inputs(70, 40, 100, dtype=torch.float64, seed=11, requires_grad=True)
    cot = torch.randn((70, 100), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out, grads = _forward_backward(gated_init_triton, inputs, cot)
    t_out, t_grads = _forward_backward(gated_init_torch, inputs, cot)
    torch.testing.assert_close(out, t_out, rtol=1e-9, atol=1e-11)
    for got, want in zip(grads, t_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("B,Z,P", [(3, 5, 7), (1, 4, 1)])
def test_gradcheck_fp64(B, Z, P):
    inputs = gate_inputs(B, Z, P, dtype=torch.float64, seed=B * Z * P, requires_grad=True)
    assert torch.autograd.gradcheck(gated_init_triton, inputs, atol=1e-8, rtol=1e-6)


def test_non_contiguous_inputs():
    z, w, b, th0 = gate_inputs(3, 80, 50, dtype=torch.float64, seed=2)
    w_t = w.t().contiguous().t()  # same values, column-major
    torch.testing.assert_close(gated_init_triton(z, w_t, b, th0), gated_init_torch(z, w, b, th0))


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_every_sweep_candidate_matches_twin(direction):
    """kernels/sweep.py times these configs on a GPU; each must compute the same op."""
    from hsmlbench.kernels.sweep import candidates, check

    for cfg in candidates(25, torch.float32, direction):
        check(direction, 25, 80, 1761, cfg, "cpu")
