"""Triton kernels for ``gated_init`` (docs/PROTOCOL.md §3 step 3): θ_i = θ0 ∘ σ(z_i W + b).

Forward: a tiled matmul z·W over (P tile, batch tile) with the bias, sigmoid and θ0 scaling as
its epilogue; the [B, P] pre-activation never reaches memory.

Backward: one launch over P tiles recomputes the pre-activation tile (a second read of W
instead of storing [B, P] in the forward), forms dx = g_out·θ0·σ'(x) in registers and
writes dW = zᵀ·dx, db and dθ0 for its tile, plus the tile's share of the z-gradient,
dx·Wᵀ; the shares are then summed over tiles (one more launch, a torch sum). dW and the
dz share are two passes over Z, so that only one of dx's two dot-operand forms (B of zᵀ·dx,
A of dx·Wᵀ) is held in registers at a time. Deterministic: no atomics.

float32 products use ``tf32x3`` (three tf32 tensor-core products, float32 accuracy);
float64 uses exact products. The interpreter computes every dot exactly.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from hsmlbench.kernels._triton_utils import (
    CompileSpec,
    _sigmoid,
    cdiv,
    compute_dtype,
    next_pow2,
    prepare,
    triton_ptr_type,
)
from torch.autograd.function import once_differentiable

# ---------------------------------------------------------------------------- kernels


@triton.jit
def _preact_tile(
    z_ptr,
    w_ptr,
    rb,
    mb,
    rp,
    mp,
    Z,
    P,
    BB: tl.constexpr,
    BP: tl.constexpr,
    BZ: tl.constexpr,
    PREC: tl.constexpr,
):
    """z[rb, :] · W[:, rp] → [BB, BP], looping over Z in chunks of BZ."""
    dt = z_ptr.dtype.element_ty
    acc = tl.zeros([BB, BP], dtype=dt)
    for z0 in range(0, Z, BZ):
        rz = z0 + tl.arange(0, BZ)
        mz = rz < Z
        zc = tl.load(
            z_ptr + rb[:, None] * Z + rz[None, :], mask=mb[:, None] & mz[None, :], other=0.0
        )
        wc = tl.load(w_ptr + rz.to(tl.int64)[:, None] * P + rp[None, :],
                     mask=mz[:, None] & mp[None, :], other=0.0)  # fmt: skip
        acc = tl.dot(zc, wc, acc, input_precision=PREC, out_dtype=dt)
    return acc


@triton.jit
def _gated_init_fwd_kernel(
    z_ptr, w_ptr, bias_ptr, th0_ptr, out_ptr, B, Z, P,
    BB: tl.constexpr, BP: tl.constexpr, BZ: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    mp = rp < P
    rb = tl.program_id(1) * BB + tl.arange(0, BB)
    mb = rb < B
    x = _preact_tile(z_ptr, w_ptr, rb, mb, rp, mp, Z, P, BB, BP, BZ, PREC)
    x += tl.load(bias_ptr + rp, mask=mp, other=0.0)[None, :]
    th0 = tl.load(th0_ptr + rp, mask=mp, other=0.0)
    out = th0[None, :] * _sigmoid(x)
    tl.store(out_ptr + rb.to(tl.int64)[:, None] * P + rp[None, :], out,
             mask=mb[:, None] & mp[None, :])  # fmt: skip


@triton.jit
def _gated_init_bwd_kernel(
    z_ptr, w_ptr, bias_ptr, th0_ptr, gout_ptr, dw_ptr, db_ptr, dth0_ptr, dzp_ptr,
    B, Z, P,
    BB: tl.constexpr, BP: tl.constexpr, BZ: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Program ``pid`` owns P tile ``pid``: dW[:, tile], db, dθ0 there, and dzp[pid] ([B, Z]).

    The whole batch is one tile (B ≤ BB; the launcher splits larger batches). Every output
    is written once (no read-modify-write), so iterations do not wait on each other. Two
    loops over Z, not one: dx as the right operand of zᵀ·dx and as the left operand of dx·Wᵀ
    are two register layouts (each split in two for tf32x3), which together spilled or took
    over 200 registers per thread at B = 32.
    """
    pid = tl.program_id(0)
    dt = z_ptr.dtype.element_ty
    rb = tl.arange(0, BB)
    mb = rb < B
    rp = pid * BP + tl.arange(0, BP)
    mp = rp < P
    bias = tl.load(bias_ptr + rp, mask=mp, other=0.0)
    th0 = tl.load(th0_ptr + rp, mask=mp, other=0.0)
    x = _preact_tile(z_ptr, w_ptr, rb, mb, rp, mp, Z, P, BB, BP, BZ, PREC) + bias[None, :]
    g = _sigmoid(x)
    go = tl.load(gout_ptr + rb.to(tl.int64)[:, None] * P + rp[None, :],
                 mask=mb[:, None] & mp[None, :], other=0.0)  # fmt: skip
    tl.store(dth0_ptr + rp, tl.sum(go * g, axis=0), mask=mp)
    dx = go * th0[None, :] * g * (1.0 - g)  # zero on masked rows and columns
    tl.store(db_ptr + rp, tl.sum(dx, axis=0), mask=mp)
    for z0 in range(0, Z, BZ):
        rz = z0 + tl.arange(0, BZ)
        mz = rz < Z
        # dW[rz, rp] = z[:, rz]ᵀ · dx   (zᵀ loaded transposed: no register transpose)
        zt = tl.load(z_ptr + rb[None, :] * Z + rz[:, None], mask=mb[None, :] & mz[:, None],
                     other=0.0)  # fmt: skip
        w_off = rz.to(tl.int64)[:, None] * P + rp[None, :]
        tl.store(dw_ptr + w_off, tl.dot(zt, dx, input_precision=PREC, out_dtype=dt),
                 mask=mz[:, None] & mp[None, :])  # fmt: skip
    for z0 in range(0, Z, BZ):
        rz = z0 + tl.arange(0, BZ)
        mz = rz < Z
        # this tile's share of dz: dx · W[rz, rp]ᵀ (W re-read from cache: the pre-activation
        # just read these [Z, BP] columns)
        wt = tl.load(w_ptr + rz.to(tl.int64)[None, :] * P + rp[:, None],
                     mask=mz[None, :] & mp[:, None], other=0.0)  # fmt: skip
        dzc = tl.dot(dx, wt, input_precision=PREC, out_dtype=dt)
        tl.store(dzp_ptr + pid * B * Z + rb[:, None] * Z + rz[None, :], dzc,
                 mask=mb[:, None] & mz[None, :])  # fmt: skip


# ---------------------------------------------------------------------------- launchers

_MAX_BB = 64


@functools.lru_cache(maxsize=256)
def _config(B: int, dtype: torch.dtype, backward: bool = False) -> dict:
    """Block sizes: the whole batch (≤ 64) in one tile, so W is read once per pass.

    Chosen from the compiled kernels' resource usage (``python -m
    hsmlbench.kernels.compile_report``, sm_80 and sm_90): no register spills, and the
    backward within a 128-register cap up to B = 32 (two 8-warp blocks share an SM), in
    both float types. The backward's Z chunk is 16 (its dots' operands and accumulators grow
    with it: BZ = 32 took 160-200 registers at B = 32); float64 does not fit the cap with two
    pipeline stages, and a 64-row batch tile does not fit it at all (it spills; uncapped,
    it takes about 240 registers).
    """
    BB = max(16, next_pow2(min(B, _MAX_BB)))
    if not backward:
        return {
            "BB": BB,
            "BP": 64,
            "BZ": 32,
            "PREC": "ieee" if dtype == torch.float64 else "tf32x3",
            "num_warps": 4,
            "num_stages": 3,
        }
    cfg = {
        "BB": BB,
        "BP": 64,
        "BZ": 16,
        "PREC": "ieee" if dtype == torch.float64 else "tf32x3",
        "num_warps": 8,
        "num_stages": 1 if dtype == torch.float64 else 2,
    }
    if BB <= 32:
        cfg["maxnreg"] = 128
    return cfg


def _check_shapes(z, weight, bias, theta0) -> tuple[int, int, int]:
    B, Z = z.shape
    P = weight.shape[1]
    if tuple(weight.shape) != (Z, P) or tuple(bias.shape) != (P,) or tuple(theta0.shape) != (P,):
        raise ValueError(
            f"gated_init: z {tuple(z.shape)}, weight {tuple(weight.shape)}, bias "
            f"{tuple(bias.shape)}, theta0 {tuple(theta0.shape)}: expected [B, Z], [Z, P], [P], [P]"
        )
    return B, Z, P


def gated_init_forward(z, weight, bias, theta0, config: dict | None = None):
    """Launch the fused forward on prepared (contiguous, same-dtype) tensors. ``config``
    replaces the block sizes and launch options of ``_config`` (kernels/sweep.py)."""
    B, Z, P = _check_shapes(z, weight, bias, theta0)
    out = torch.empty((B, P), dtype=z.dtype, device=z.device)
    if B == 0 or P == 0:
        return out
    cfg = dict(config) if config is not None else _config(B, z.dtype)
    grid = (cdiv(P, cfg["BP"]), cdiv(B, cfg["BB"]))
    _gated_init_fwd_kernel[grid](z, weight, bias, theta0, out, B, Z, P, **cfg)
    return out


def gated_init_backward(z, weight, bias, theta0, gout, config: dict | None = None):
    """Launch the fused backward; returns (dz, dW, db, dθ0). ``config`` as in the forward;
    its batch tile ``BB`` must hold the whole batch (at most 64)."""
    B, Z, P = _check_shapes(z, weight, bias, theta0)
    if B > _MAX_BB:  # one batch tile per launch; sum the parameter gradients of the chunks
        parts = [
            gated_init_backward(
                z[i : i + _MAX_BB], weight, bias, theta0, gout[i : i + _MAX_BB], config
            )
            for i in range(0, B, _MAX_BB)
        ]
        dz = torch.cat([part[0] for part in parts])
        return (dz, *(sum(part[i] for part in parts) for i in (1, 2, 3)))
    dw = torch.empty_like(weight)
    db = torch.empty_like(bias)
    dth0 = torch.empty_like(theta0)
    if B == 0 or P == 0 or Z == 0:
        return torch.zeros_like(z), dw.zero_(), db.zero_(), dth0.zero_()
    cfg = dict(config) if config is not None else _config(B, z.dtype, backward=True)
    if cfg["BB"] < B:
        raise ValueError(f"gated_init backward: batch tile BB={cfg['BB']} < B={B}")
    n_tiles = cdiv(P, cfg["BP"])
    dzp = torch.empty((n_tiles, B, Z), dtype=z.dtype, device=z.device)
    _gated_init_bwd_kernel[(n_tiles,)](
        z, weight, bias, theta0, gout, dw, db, dth0, dzp, B, Z, P, **cfg
    )
    dz = dzp[0] if n_tiles == 1 else dzp.sum(0)
    return dz, dw, db, dth0


class GatedInitFunction(torch.autograd.Function):
    """Saves the inputs (not the [B, P] pre-activation) and calls the launchers."""

    @staticmethod
    def forward(ctx, z, weight, bias, theta0):
        ctx.save_for_backward(z, weight, bias, theta0)
        return gated_init_forward(z, weight, bias, theta0)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        z, weight, bias, theta0 = ctx.saved_tensors
        return gated_init_backward(z, weight, bias, theta0, prepare(gout, z.dtype))


def gated_init_triton(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, theta0: torch.Tensor
) -> torch.Tensor:
    """Triton ``gated_init``: same signature and result as ``gated_init_torch``."""
    dtype = compute_dtype(z, weight, bias, theta0)
    out = GatedInitFunction.apply(*(prepare(t, dtype) for t in (z, weight, bias, theta0)))
    return out if z.dtype == dtype else out.to(z.dtype)


# ---------------------------------------------------------------------------- compile specs


def compile_specs(dtype: torch.dtype, B: int = 32) -> list[CompileSpec]:
    """The kernels as the launchers specialise them, for ``triton.compile`` on a GPU target."""
    ptr = triton_ptr_type(dtype)
    fcfg, bcfg = dict(_config(B, dtype)), dict(_config(B, dtype, backward=True))
    opt_keys = ("num_warps", "num_stages", "maxnreg")
    fopts = {k: fcfg.pop(k) for k in opt_keys if k in fcfg}
    bopts = {k: bcfg.pop(k) for k in opt_keys if k in bcfg}
    fwd_sig = {f"{n}_ptr": ptr for n in ("z", "w", "bias", "th0", "out")}
    fwd_sig.update(B="i32", Z="i32", P="i32")
    bwd_sig = {
        f"{n}_ptr": ptr for n in ("z", "w", "bias", "th0", "gout", "dw", "db", "dth0", "dzp")
    }
    bwd_sig.update(B="i32", Z="i32", P="i32")
    return [
        CompileSpec("gated_init_fwd", _gated_init_fwd_kernel, fwd_sig, fcfg, fopts),
        CompileSpec("gated_init_bwd", _gated_init_bwd_kernel, bwd_sig, bcfg, bopts),
    ]
