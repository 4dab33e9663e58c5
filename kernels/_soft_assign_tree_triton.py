"""Triton kernels for ``soft_assign_tree`` (docs/PROTOCOL.md §3 step 2): one forward launch, two
backward.

Forward: one program per task row keeps the row's small per-node state in registers (p, q,
the level-2 transforms [K1, K2, d] and nodes [K2, d]; d ≤ 128, K1 ≤ 10, K2 = 2 in HSML) and
streams the [d, d] weight matrices in chunks of BC rows or columns, never a whole matrix in
registers: the K1 level-1 nodes are formed one column chunk at a time, and each chunk goes
straight into the level-2 logits and, through the same rows of U_j, into the level-2
pre-activations. p, q and the root come out of a single launch.

Backward: launch 1, one program per row, recomputes the forward and writes the row's gradient
of h plus the per-row gradients at every pre-activation (and the node values they multiply)
to one scratch buffer, with the same chunking; launch 2 reduces those over the batch into the
weight gradients, one program per (weight, column tile), as small ``Aᵀ·D`` products. No
atomics: deterministic.

Registers: whole [d, d] tiles (64 values per thread at d = 128 and 8 warps, plus their
addresses) next to the per-node state made the row kernels spill at the image size; with
[d, 16] chunks they do not in float32 (``python -m hsmlbench.kernels.compile_report``).

The math follows ``soft_assign_tree_torch`` (the twin) exactly; see its module for shapes.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from hsmlbench.kernels._triton_utils import (
    CompileSpec,
    _tanh,
    cdiv,
    compute_dtype,
    next_pow2,
    prepare,
    split_float,
    triton_ptr_type,
)
from torch.autograd.function import once_differentiable

# ---------------------------------------------------------------------------- kernels


@triton.jit
def _row(tile, rows, i):
    """Row ``i`` of a 2-D register tile, as a vector."""
    return tl.sum(tl.where(rows[:, None] == i, tile, 0.0), axis=0)


@triton.jit
def _put_row(tile, rows, i, vec):
    """``tile`` with row ``i`` replaced by ``vec``."""
    return tl.where(rows[:, None] == i, vec[None, :], tile)


@triton.jit
def _at(vec, idx, i):
    """Scalar ``vec[i]`` of a register vector."""
    return tl.sum(tl.where(idx == i, vec, 0.0), axis=0)


@triton.jit
def _is_kj(rk, rj, k, j):
    """[BK1, BK2] mask of entry (k, j)."""
    return (rk[:, None] == k) & (rj[None, :] == j)


@triton.jit
def _kj(tile, rk, rj, k, j):
    """``tile[k, j, :]`` of a [BK1, BK2, BD] register tile, as a vector."""
    sel = _is_kj(rk, rj, k, j)[:, :, None]
    return tl.sum(tl.sum(tl.where(sel, tile, 0.0), axis=1), axis=0)


@triton.jit
def _scratch_offsets(B, D, K1, K2):
    """Element offsets of the backward scratch arrays inside one flat buffer."""
    off_ga1 = 0  # [B, K1, D] gradient at the level-1 pre-activation
    off_n1 = off_ga1 + B * K1 * D  # [B, K1, D] level-1 nodes
    off_gau = off_n1 + B * K1 * D  # [B, K1, K2, D] gradient at the level-2 pre-activation
    off_n2 = off_gau + B * K1 * K2 * D  # [B, K2, D] level-2 nodes
    off_gar = off_n2 + B * K2 * D  # [B, K2, D] gradient at the root pre-activation
    off_gs = off_gar + B * K2 * D  # [B, K1, K2] gradient at the level-2 logits
    off_gd = off_gs + B * K1 * K2  # [B, K1] gradient at the squared distances
    return off_ga1, off_n1, off_gau, off_n2, off_gar, off_gs, off_gd


def _scratch_numel(B: int, D: int, K1: int, K2: int) -> int:
    return 2 * B * K1 * D + B * K1 * K2 * D + 2 * B * K2 * D + B * K1 * K2 + B * K1


@triton.jit
def _w1_columns(w1_ptr, k, D, rd, md, cols, mc):
    """Columns ``cols`` of W1_k, all its rows: a [BD, BC] tile."""
    return tl.load(w1_ptr + k * D * D + rd[:, None] * D + cols[None, :],
                   mask=md[:, None] & mc[None, :], other=0.0)  # fmt: skip


@triton.jit
def _tree_row_forward(
    b, h_ptr, c_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, u_ptr, ub_ptr, sig_hi, sig_lo,
    D, K1, K2, BD: tl.constexpr, BK1: tl.constexpr, BK2: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """Forward of one task row up to the level-2 nodes, streaming the weights in chunks.

    Returns h [BD], p [BK1], Q [BK1, BK2], TU [BK1, BK2, BD] (TU[k, j] = tanh(n1_k U_j + ub_j),
    kept for the backward) and N2 [BK2, BD]; padded rows and columns of p, Q and N2 are zero.
    """
    rd = tl.arange(0, BD)
    md = rd < D
    rk = tl.arange(0, BK1)
    mk = rk < K1
    rj = tl.arange(0, BK2)
    mj = rj < K2
    rc = tl.arange(0, BC)

    h = tl.load(h_ptr + b * D + rd, mask=md, other=0.0)
    dt = h.dtype
    # level 1: p = softmax_k(-‖h − c_k‖² / (2σ))
    C = tl.load(c_ptr + rk[:, None] * D + rd[None, :], mask=mk[:, None] & md[None, :], other=0.0)
    diff = h[None, :] - C
    dist = tl.sum(diff * diff, axis=1)
    two_sigma = 2.0 * (tl.cast(sig_hi, dt) + tl.cast(sig_lo, dt))
    logit = tl.where(mk, -dist / two_sigma, float("-inf"))
    e = tl.where(mk, tl.exp(logit - tl.max(logit, axis=0)), 0.0)
    p = e / tl.sum(e, axis=0)
    # level-1 nodes n1_k = p_k · tanh(h W1_k + b1_k), one column chunk N1c [BK1, BC] at a time;
    # each chunk adds its share to the level-2 logits s_kj = n1_k · w2[:, j] + b2_j and
    # pre-activations au_kj = n1_k U_j + ub_j (with the chunk's rows of U_j). Products are
    # explicit multiply-and-sum, not tl.dot: an fp32 "ieee" dot runs on FMAs with whole
    # K-rows of its operands in each thread's registers, which spilled here.
    S = tl.zeros([BK1, BK2], dtype=dt)
    AU = tl.zeros([BK1, BK2, BD], dtype=dt)
    for c0 in range(0, D, BC):
        cols = c0 + rc
        mc = cols < D
        T1c = tl.zeros([BK1, BC], dtype=dt)
        for k in range(K1):
            W = _w1_columns(w1_ptr, k, D, rd, md, cols, mc)
            a = tl.sum(h[:, None] * W, axis=0) + tl.load(b1_ptr + k * D + cols, mask=mc, other=0.0)
            T1c = _put_row(T1c, rk, k, _tanh(a))
        N1c = p[:, None] * T1c
        W2c = tl.load(w2_ptr + cols[:, None] * K2 + rj[None, :], mask=mc[:, None] & mj[None, :],
                      other=0.0)  # fmt: skip
        S += tl.sum(N1c[:, :, None] * W2c[None, :, :], axis=1)
        for j in range(K2):
            Uc = tl.load(u_ptr + j * D * D + cols[:, None] * D + rd[None, :],
                         mask=mc[:, None] & md[None, :], other=0.0)  # fmt: skip
            for k in range(K1):
                au = tl.sum(_row(N1c, rk, k)[:, None] * Uc, axis=0)
                AU = tl.where(_is_kj(rk, rj, k, j)[:, :, None], AU + au[None, None, :], AU)
    # level-2 assignment: q_k = softmax_j(s_k)
    S = S + tl.load(b2_ptr + rj, mask=mj, other=0.0)[None, :]
    S = tl.where(mj[None, :], S, float("-inf"))
    E = tl.where(mj[None, :], tl.exp(S - tl.max(S, axis=1)[:, None]), 0.0)
    Q = tl.where(mk[:, None], E / tl.sum(E, axis=1)[:, None], 0.0)
    # level-2 nodes: n2_j = Σ_k q_kj · tanh(au_kj)
    UB = tl.load(ub_ptr + rj[:, None] * D + rd[None, :], mask=mj[:, None] & md[None, :], other=0.0)
    TU = _tanh(AU + UB[None, :, :])
    N2 = tl.sum(Q[:, :, None] * TU, axis=0)
    return h, p, Q, TU, N2


@triton.jit
def _soft_assign_tree_fwd_kernel(
    h_ptr, c_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, u_ptr, ub_ptr, r_ptr, rb_ptr,
    p_ptr, q_ptr, root_ptr, sig_hi, sig_lo,
    D, K1, K2, BD: tl.constexpr, BK1: tl.constexpr, BK2: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    h, p, Q, TU, N2 = _tree_row_forward(
        b, h_ptr, c_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, u_ptr, ub_ptr, sig_hi, sig_lo,
        D, K1, K2, BD, BK1, BK2, BC,
    )  # fmt: skip
    dt = h.dtype
    rd = tl.arange(0, BD)
    md = rd < D
    rk = tl.arange(0, BK1)
    mk = rk < K1
    rj = tl.arange(0, BK2)
    mj = rj < K2
    rc = tl.arange(0, BC)
    # root = Σ_j tanh(n2_j R + rb), one column chunk at a time
    for c0 in range(0, D, BC):
        cols = c0 + rc
        mc = cols < D
        Rc = tl.load(r_ptr + rd[:, None] * D + cols[None, :], mask=md[:, None] & mc[None, :],
                     other=0.0)  # fmt: skip
        rbc = tl.load(rb_ptr + cols, mask=mc, other=0.0)
        root = tl.zeros([BC], dtype=dt)
        for j in range(K2):
            root += _tanh(tl.sum(_row(N2, rj, j)[:, None] * Rc, axis=0) + rbc)
        tl.store(root_ptr + b * D + cols, root, mask=mc)
    tl.store(p_ptr + b * K1 + rk, p, mask=mk)
    tl.store(
        q_ptr + b * K1 * K2 + rk[:, None] * K2 + rj[None, :], Q, mask=mk[:, None] & mj[None, :]
    )


@triton.jit
def _soft_assign_tree_bwd_row_kernel(
    h_ptr, c_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, u_ptr, ub_ptr, r_ptr, rb_ptr,
    gp_ptr, gq_ptr, groot_ptr, dh_ptr, scratch_ptr, sig_hi, sig_lo,
    B, D, K1, K2, BD: tl.constexpr, BK1: tl.constexpr, BK2: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """Per-row backward: dh, and the per-row factors of every weight gradient (to scratch)."""
    b = tl.program_id(0)
    h, p, Q, TU, N2 = _tree_row_forward(
        b, h_ptr, c_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, u_ptr, ub_ptr, sig_hi, sig_lo,
        D, K1, K2, BD, BK1, BK2, BC,
    )  # fmt: skip
    dt = h.dtype
    off_ga1, off_n1, off_gau, off_n2, off_gar, off_gs, off_gd = _scratch_offsets(B, D, K1, K2)
    rd = tl.arange(0, BD)
    md = rd < D
    rk = tl.arange(0, BK1)
    mk = rk < K1
    rj = tl.arange(0, BK2)
    mj = rj < K2
    rc = tl.arange(0, BC)
    two_sigma = 2.0 * (tl.cast(sig_hi, dt) + tl.cast(sig_lo, dt))

    # root = Σ_j tanh(ar_j), ar_j = n2_j R + rb: gar_j = groot (1 − tanh² ar_j), G_N2 = gar Rᵀ,
    # over column chunks of R (a chunk of ar_j is a chunk of the reduction in gar_j Rᵀ)
    tl.store(scratch_ptr + off_n2 + (b * K2 + rj[:, None]) * D + rd[None, :], N2,
             mask=mj[:, None] & md[None, :])  # fmt: skip
    G_N2 = tl.zeros([BK2, BD], dtype=dt)
    for c0 in range(0, D, BC):
        cols = c0 + rc
        mc = cols < D
        Rc = tl.load(r_ptr + rd[:, None] * D + cols[None, :], mask=md[:, None] & mc[None, :],
                     other=0.0)  # fmt: skip
        rbc = tl.load(rb_ptr + cols, mask=mc, other=0.0)
        groot = tl.load(groot_ptr + b * D + cols, mask=mc, other=0.0)
        for j in range(K2):
            tr = _tanh(tl.sum(_row(N2, rj, j)[:, None] * Rc, axis=0) + rbc)
            gar = groot * (1.0 - tr * tr)
            tl.store(scratch_ptr + off_gar + (b * K2 + j) * D + cols, gar, mask=mc)
            G_N2 += tl.where(rj[:, None] == j, tl.sum(Rc * gar[None, :], axis=1)[None, :], 0.0)

    # n2_j = Σ_k q_kj tu_kj, tu_kj = tanh(au_kj), au_kj = n1_k U_j + ub_j
    mkj = mk[:, None] & mj[None, :]
    GQ = tl.load(gq_ptr + b * K1 * K2 + rk[:, None] * K2 + rj[None, :], mask=mkj, other=0.0)
    GQ += tl.sum(G_N2[None, :, :] * TU, axis=2)
    GAU = Q[:, :, None] * G_N2[None, :, :] * (1.0 - TU * TU)  # zero on padded k, j and d
    kjd = ((b * K1 + rk[:, None, None]) * K2 + rj[None, :, None]) * D + rd[None, None, :]
    tl.store(scratch_ptr + off_gau + kjd, GAU, mask=mkj[:, :, None] & md[None, None, :])

    # q_k = softmax_j(s_k), s_kj = n1_k · w2[:, j] + b2_j
    GS = Q * (GQ - tl.sum(Q * GQ, axis=1)[:, None])
    tl.store(scratch_ptr + off_gs + b * K1 * K2 + rk[:, None] * K2 + rj[None, :], GS, mask=mkj)

    # n1_k = p_k t1_k, t1_k = tanh(a1_k), a1_k = h W1_k + b1_k, one column chunk at a time:
    # G_N1[:, c] = Σ_j gau_j U_j[c, :]ᵀ + gs w2[c, :]ᵀ, then for each k the chunk's
    # t1_k (recomputed) and ga1_k, whose product with W1_k[:, c]ᵀ adds to dh
    GP = tl.load(gp_ptr + b * K1 + rk, mask=mk, other=0.0)
    dh = tl.zeros([BD], dtype=dt)
    for c0 in range(0, D, BC):
        cols = c0 + rc
        mc = cols < D
        W2c = tl.load(w2_ptr + cols[:, None] * K2 + rj[None, :], mask=mc[:, None] & mj[None, :],
                      other=0.0)  # fmt: skip
        G_N1c = tl.sum(GS[:, None, :] * W2c[None, :, :], axis=2)
        for j in range(K2):
            Uc = tl.load(u_ptr + j * D * D + cols[:, None] * D + rd[None, :],
                         mask=mc[:, None] & md[None, :], other=0.0)  # fmt: skip
            for k in range(K1):
                gn1 = tl.sum(Uc * _kj(GAU, rk, rj, k, j)[None, :], axis=1)
                G_N1c += tl.where(rk[:, None] == k, gn1[None, :], 0.0)
        for k in range(K1):
            W = _w1_columns(w1_ptr, k, D, rd, md, cols, mc)
            t1 = _tanh(tl.sum(h[:, None] * W, axis=0)
                       + tl.load(b1_ptr + k * D + cols, mask=mc, other=0.0))  # fmt: skip
            gn1 = _row(G_N1c, rk, k)
            pk = _at(p, rk, k)
            ga1 = pk * gn1 * (1.0 - t1 * t1)
            GP += tl.where(rk == k, tl.sum(gn1 * t1, axis=0), 0.0)
            dh += tl.sum(W * ga1[None, :], axis=1)
            tl.store(scratch_ptr + off_ga1 + (b * K1 + k) * D + cols, ga1, mask=mc)
            tl.store(scratch_ptr + off_n1 + (b * K1 + k) * D + cols, pk * t1, mask=mc)

    # p = softmax_k(-dist_k / (2σ)), dist_k = ‖h − c_k‖²
    glogit = p * (GP - tl.sum(p * GP, axis=0))
    gdist = -glogit / two_sigma
    C = tl.load(c_ptr + rk[:, None] * D + rd[None, :], mask=mk[:, None] & md[None, :], other=0.0)
    dh += 2.0 * tl.sum(gdist[:, None] * (h[None, :] - C), axis=0)
    tl.store(scratch_ptr + off_gd + b * K1 + rk, gdist, mask=mk)
    tl.store(dh_ptr + b * D + rd, dh, mask=md)


@triton.jit
def _outer_sum(
    a_ptr,
    a_stride,
    d_ptr,
    d_stride,
    N,
    D,
    NC,
    cols,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BC: tl.constexpr,
    PREC: tl.constexpr,
):
    """Σ_n a_nᵀ d_n[cols] → [BD, BC], and Σ_n d_n[cols] → [BC]: a batch reduction as Aᵀ·D."""
    rd = tl.arange(0, BD)
    rn = tl.arange(0, BN)
    dt = a_ptr.dtype.element_ty
    acc = tl.zeros([BD, BC], dtype=dt)
    dsum = tl.zeros([BC], dtype=dt)
    for n0 in range(0, N, BN):
        n = n0 + rn
        mn = n < N
        A = tl.load(a_ptr + n[:, None] * a_stride + rd[None, :],
                    mask=mn[:, None] & (rd[None, :] < D), other=0.0)  # fmt: skip
        G = tl.load(d_ptr + n[:, None] * d_stride + cols[None, :],
                    mask=mn[:, None] & (cols[None, :] < NC), other=0.0)  # fmt: skip
        acc = tl.dot(tl.trans(A), G, acc, input_precision=PREC, out_dtype=dt)
        dsum += tl.sum(G, axis=0)
    return acc, dsum


@triton.jit
def _soft_assign_tree_bwd_weights_kernel(
    h_ptr, c_ptr, scratch_ptr,
    dc_ptr, dw1_ptr, db1_ptr, dw2_ptr, db2_ptr, du_ptr, dub_ptr, dr_ptr, drb_ptr,
    B, D, K1, K2,
    BD: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Weight gradients, summed over the batch. Program (s, c): weight s, output columns c."""
    s = tl.program_id(0)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    rd = tl.arange(0, BD)
    rn = tl.arange(0, BN)
    md = rd < D
    mc = cols < D
    out_dd = rd[:, None] * D + cols[None, :]
    m_dd = md[:, None] & mc[None, :]
    off_ga1, off_n1, off_gau, off_n2, off_gar, off_gs, off_gd = _scratch_offsets(B, D, K1, K2)
    if s < K1:
        # W1_k, b1_k: rows b of h against ga1[b, k]; centres c_k through the distance
        k = s
        acc, dsum = _outer_sum(h_ptr, D, scratch_ptr + off_ga1 + k * D, K1 * D, B, D, D, cols,
                               BN, BD, BC, PREC)  # fmt: skip
        tl.store(dw1_ptr + k * D * D + out_dd, acc, mask=m_dd)
        tl.store(db1_ptr + k * D + cols, dsum, mask=mc)
        # dc_k = -2 Σ_b gd[b, k] (h_b − c_k)
        wsum = tl.zeros([BC], dtype=acc.dtype)
        gsum = tl.zeros([BN], dtype=acc.dtype)
        for n0 in range(0, B, BN):
            n = n0 + rn
            mn = n < B
            gd = tl.load(scratch_ptr + off_gd + n * K1 + k, mask=mn, other=0.0)
            H = tl.load(h_ptr + n[:, None] * D + cols[None, :], mask=mn[:, None] & mc[None, :],
                        other=0.0)  # fmt: skip
            wsum += tl.sum(gd[:, None] * H, axis=0)
            gsum += gd
        ck = tl.load(c_ptr + k * D + cols, mask=mc, other=0.0)
        tl.store(dc_ptr + k * D + cols, -2.0 * (wsum - ck * tl.sum(gsum, axis=0)), mask=mc)
    elif s < K1 + K2:
        # U_j, ub_j: rows (b, k) of n1 against gau[b, k, j]
        j = s - K1
        acc, dsum = _outer_sum(scratch_ptr + off_n1, D, scratch_ptr + off_gau + j * D, K2 * D,
                               B * K1, D, D, cols, BN, BD, BC, PREC)  # fmt: skip
        tl.store(du_ptr + j * D * D + out_dd, acc, mask=m_dd)
        tl.store(dub_ptr + j * D + cols, dsum, mask=mc)
    elif s == K1 + K2:
        # R, rb: rows (b, j) of n2 against gar[b, j]
        acc, dsum = _outer_sum(scratch_ptr + off_n2, D, scratch_ptr + off_gar, D,
                               B * K2, D, D, cols, BN, BD, BC, PREC)  # fmt: skip
        tl.store(dr_ptr + out_dd, acc, mask=m_dd)
        tl.store(drb_ptr + cols, dsum, mask=mc)
    else:
        # w2, b2 ([D, K2], [K2]): rows (b, k) of n1 against gs[b, k, :]; first column tile only
        if tl.program_id(1) == 0:
            rc = tl.arange(0, BC)
            acc, dsum = _outer_sum(scratch_ptr + off_n1, D, scratch_ptr + off_gs, K2,
                                   B * K1, D, K2, rc, BN, BD, BC, PREC)  # fmt: skip
            mk2 = rc < K2
            tl.store(dw2_ptr + rd[:, None] * K2 + rc[None, :], acc, mask=md[:, None] & mk2[None, :])
            tl.store(db2_ptr + rc, dsum, mask=mk2)


# ---------------------------------------------------------------------------- launchers


def _pow2(n: int, lo: int = 1) -> int:
    return max(lo, next_pow2(n))


@functools.lru_cache(maxsize=256)
def _row_config(D: int, K1: int, K2: int) -> dict:
    """Block sizes and warps of the per-row kernels: whole rows in registers, the [d, d]
    weights streamed as [BD, BC] or [BC, BD] chunks.

    From ``compile_report`` (sm_80 and sm_90, float32): BC = 16 with 8 warps compiles without
    spills at d = 128, K1 = 10 and at d = 40, K1 = 4; BC = 32, or 4 warps, spilled or took
    245-255 registers in the backward.
    """
    BD = _pow2(D, 16)
    return {
        "BD": BD,
        "BK1": _pow2(K1, 2),
        "BK2": _pow2(K2, 2),
        "BC": min(BD, 16),
        "num_warps": 8 if BD >= 64 else 4,
    }


@functools.lru_cache(maxsize=256)
def _weights_config(D: int, dtype: torch.dtype) -> dict:
    BD = _pow2(D, 16)
    return {
        "BD": BD,
        "BC": 32,
        "BN": 16,
        "PREC": "ieee",  # exact fp32 (FMA) products: these are small, latency-bound reductions
        "num_warps": 4,
    }


def _check_shapes(h, centres, w1, b1, w2, b2, u, ub, r, rb) -> tuple[int, int, int, int]:
    B, D = h.shape
    K1 = centres.shape[0]
    K2 = w2.shape[1]
    expected = {
        "centres": (centres, (K1, D)), "w1": (w1, (K1, D, D)), "b1": (b1, (K1, D)),
        "w2": (w2, (D, K2)), "b2": (b2, (K2,)), "u": (u, (K2, D, D)), "ub": (ub, (K2, D)),
        "r": (r, (D, D)), "rb": (rb, (D,)),
    }  # fmt: skip
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(
                f"soft_assign_tree: {name} has shape {tuple(t.shape)}, expected {shape}"
            )
    if D > 256 or K1 > 64 or K2 > 16:
        raise ValueError(f"soft_assign_tree kernel holds rows in registers: d={D} > 256, "
                         f"K1={K1} > 64 or K2={K2} > 16 is out of its range")  # fmt: skip
    return B, D, K1, K2


def soft_assign_tree_forward(h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma: float):
    """Launch the forward kernel on prepared (contiguous, same-dtype) tensors."""
    B, D, K1, K2 = _check_shapes(h, centres, w1, b1, w2, b2, u, ub, r, rb)
    p = torch.empty((B, K1), dtype=h.dtype, device=h.device)
    q = torch.empty((B, K1, K2), dtype=h.dtype, device=h.device)
    root = torch.empty((B, D), dtype=h.dtype, device=h.device)
    if B == 0:
        return p, q, root
    cfg = _row_config(D, K1, K2)
    sig_hi, sig_lo = split_float(float(sigma))
    _soft_assign_tree_fwd_kernel[(B,)](
        h, centres, w1, b1, w2, b2, u, ub, r, rb, p, q, root, sig_hi, sig_lo, D, K1, K2, **cfg
    )
    return p, q, root


def soft_assign_tree_backward(h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma, gp, gq, groot):
    """Launch the two backward kernels; returns the gradients of the ten tensor inputs."""
    B, D, K1, K2 = _check_shapes(h, centres, w1, b1, w2, b2, u, ub, r, rb)
    dh = torch.empty_like(h)
    grads = [torch.empty_like(t) for t in (centres, w1, b1, w2, b2, u, ub, r, rb)]
    if B == 0:
        return (dh, *(g.zero_() for g in grads))
    scratch = torch.empty(_scratch_numel(B, D, K1, K2), dtype=h.dtype, device=h.device)
    sig_hi, sig_lo = split_float(float(sigma))
    cfg = _row_config(D, K1, K2)
    _soft_assign_tree_bwd_row_kernel[(B,)](
        h, centres, w1, b1, w2, b2, u, ub, r, rb, gp, gq, groot, dh, scratch, sig_hi, sig_lo,
        B, D, K1, K2, **cfg,
    )  # fmt: skip
    dc, dw1, db1, dw2, db2, du, dub, dr, drb = grads
    wcfg = _weights_config(D, h.dtype)
    grid = (K1 + K2 + 2, cdiv(D, wcfg["BC"]))
    _soft_assign_tree_bwd_weights_kernel[grid](
        h, centres, scratch, dc, dw1, db1, dw2, db2, du, dub, dr, drb, B, D, K1, K2, **wcfg
    )
    return dh, dc, dw1, db1, dw2, db2, du, dub, dr, drb


class SoftAssignTreeFunction(torch.autograd.Function):
    """Saves the inputs and calls the launchers; the backward is not itself differentiable."""

    @staticmethod
    def forward(ctx, h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma):
        ctx.sigma = sigma
        ctx.save_for_backward(h, centres, w1, b1, w2, b2, u, ub, r, rb)
        return soft_assign_tree_forward(h, centres, w1, b1, w2, b2, u, ub, r, rb, sigma)

    @staticmethod
    @once_differentiable
    def backward(ctx, gp, gq, groot):
        inputs = ctx.saved_tensors
        dtype = inputs[0].dtype
        gp, gq, groot = (prepare(g, dtype) for g in (gp, gq, groot))
        grads = soft_assign_tree_backward(*inputs, ctx.sigma, gp, gq, groot)
        return (*grads, None)


def soft_assign_tree_triton(
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
    """Triton ``soft_assign_tree``: same signature and results as ``soft_assign_tree_torch``."""
    tensors = (h, centres, w1, b1, w2, b2, u, ub, r, rb)
    dtype = compute_dtype(*tensors)
    out = SoftAssignTreeFunction.apply(*(prepare(t, dtype) for t in tensors), float(sigma))
    if h.dtype != dtype:  # half inputs were computed in float32
        out = tuple(o.to(h.dtype) for o in out)
    return out


# ---------------------------------------------------------------------------- compile specs


def compile_specs(dtype: torch.dtype, D: int = 128, K1: int = 10, K2: int = 2) -> list[CompileSpec]:
    """The kernels as the launchers specialise them, for ``triton.compile`` on a GPU target."""
    ptr = triton_ptr_type(dtype)
    row = dict(_row_config(D, K1, K2))
    warps = row.pop("num_warps")
    names = ["h", "c", "w1", "b1", "w2", "b2", "u", "ub", "r", "rb"]
    fwd_sig = {f"{n}_ptr": ptr for n in names + ["p", "q", "root"]}
    fwd_sig.update(sig_hi="fp32", sig_lo="fp32", D="i32", K1="i32", K2="i32")
    bwd_sig = {f"{n}_ptr": ptr for n in names + ["gp", "gq", "groot", "dh", "scratch"]}
    bwd_sig.update(sig_hi="fp32", sig_lo="fp32", B="i32", D="i32", K1="i32", K2="i32")
    wcfg = dict(_weights_config(D, dtype))
    wwarps = wcfg.pop("num_warps")
    w_sig = {f"{n}_ptr": ptr for n in ["h", "c", "scratch", "dc", "dw1", "db1", "dw2", "db2",
                                        "du", "dub", "dr", "drb"]}  # fmt: skip
    w_sig.update(B="i32", D="i32", K1="i32", K2="i32")
    return [
        CompileSpec(
            "soft_assign_tree_fwd",
            _soft_assign_tree_fwd_kernel,
            fwd_sig,
            dict(row),
            {"num_warps": warps},
        ),  # fmt: skip
        CompileSpec(
            "soft_assign_tree_bwd_row",
            _soft_assign_tree_bwd_row_kernel,
            bwd_sig,
            dict(row),
            {"num_warps": warps},
        ),  # fmt: skip
        CompileSpec(
            "soft_assign_tree_bwd_weights",
            _soft_assign_tree_bwd_weights_kernel,
            w_sig,
            wcfg,
            {"num_warps": wwarps},
        ),  # fmt: skip
    ]
