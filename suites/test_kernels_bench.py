"""Kernel benchmarks: Triton op vs eager twin vs ``torch.compile`` of the twin.

    pytest suites/ --benchmark-only -k kernels

GPU only. For each op (``soft_assign_tree``, ``gated_init``), size (regression; image at
B = 4 and 32) and mode (fwd, fwd+bwd), the three implementations run in one session, in the
order eager, compile, triton; each first has its outputs (and gradients) checked against the
twin and a float64 reference, then is timed with CUDA events (``CudaEventTimer`` as the
pytest-benchmark timer); then its device time alone is taken from a CUDA graph of 20 calls.
Each finished triton row rewrites ``results/kernels.md`` (or
``$HSMLBENCH_RESULTS_DIR/kernels.md``) with µs, ratios, and GB/s against the card's peak.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hsmlbench.kernels import gated_init_torch, soft_assign_tree_torch
from hsmlbench.kernels.bench import (
    BENCH_SIZES,
    TARGETS,
    CudaEventTimer,
    assert_float32_close,
    device_time_us,
    gate_bytes,
    gate_inputs,
    l2_cache_bytes,
    machine_info,
    peak_bandwidth_gbs,
    render_markdown,
    rotation_sets,
    tree_inputs,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="kernel benchmarks need a CUDA GPU (Triton kernels, CUDA-event timing); "
        "on CPU the kernels are tested by tests/interpreter",
    ),
]

OPS = ("soft_assign_tree", "gated_init")
MODES = ("fwd", "fwd+bwd")
IMPLS = ("eager", "compile", "triton")  # triton last: its row reads the other two medians
CASES = [(o, s, m, i) for o in OPS for s in BENCH_SIZES for m in MODES for i in IMPLS]
ROUNDS, WARMUP_ROUNDS = 200, 25
SIGMA = 2.0  # docs/PROTOCOL.md §3 step 2
TIMER = CudaEventTimer()
_RESULTS: dict[tuple[str, str, str], dict[str, dict]] = {}
_COMPILED: dict[str, object] = {}


def _twin(op):
    return {"soft_assign_tree": soft_assign_tree_torch, "gated_init": gated_init_torch}[op]


def _impl(op, impl):
    if impl == "eager":
        return _twin(op)
    if impl == "compile":
        if op not in _COMPILED:
            _COMPILED[op] = torch.compile(_twin(op), dynamic=False)
        return _COMPILED[op]
    if op == "soft_assign_tree":
        from hsmlbench.kernels._soft_assign_tree_triton import soft_assign_tree_triton

        return soft_assign_tree_triton
    from hsmlbench.kernels._gated_init_triton import gated_init_triton

    return gated_init_triton


def _inputs(op, size, dtype, requires_grad, seed=0):
    s = BENCH_SIZES[size]
    kw = dict(dtype=dtype, device="cuda", seed=seed, requires_grad=requires_grad)
    if op == "soft_assign_tree":
        return tree_inputs(s.B, s.d, s.K1, s.K2, **kw)
    return gate_inputs(s.B, s.Z, s.P, **kw)


def _runner(op, fn, inputs, mode):
    """A zero-argument closure: the forward, or the forward and the input gradients."""

    def outputs():
        out = fn(*inputs, SIGMA) if op == "soft_assign_tree" else fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    if mode == "fwd":
        return outputs
    device = inputs[0].device
    gen = torch.Generator(device=device).manual_seed(1)
    cotangents = [
        torch.randn(o.shape, generator=gen, device=device, dtype=o.dtype) for o in outputs()
    ]

    def forward_backward():
        return torch.autograd.grad(outputs(), inputs, cotangents)

    return forward_backward


def _check(op, size, mode, fn):
    """Outputs (and gradients) of ``fn`` in float32 within a small factor of the float32
    twin's own error against the float64 twin."""
    rg = mode == "fwd+bwd"
    got = _runner(op, fn, _inputs(op, size, torch.float32, rg), mode)()
    twin = _runner(op, _twin(op), _inputs(op, size, torch.float32, rg), mode)()
    ref = _runner(op, _twin(op), _inputs(op, size, torch.float64, rg), mode)()
    if mode == "fwd+bwd":  # compare the outputs too, not only the gradients
        got = (*_runner(op, fn, _inputs(op, size, torch.float32, False), "fwd")(), *got)
        twin = (*_runner(op, _twin(op), _inputs(op, size, torch.float32, False), "fwd")(), *twin)
        ref = (*_runner(op, _twin(op), _inputs(op, size, torch.float64, False), "fwd")(), *ref)
    for i, (g, t, r) in enumerate(zip(got, twin, ref, strict=True)):
        assert_float32_close(g, t, r, f"tensor {i}")


def _write_table():
    """Render results/kernels.md from this run's medians (after every row, so a run cut
    short still leaves the rows it finished)."""
    from hsmlbench.atomic import write_text

    default = Path(__file__).resolve().parents[1] / "results"
    out = Path(os.environ.get("HSMLBENCH_RESULTS_DIR", default)) / "kernels.md"
    write_text(out, render_markdown(_RESULTS, machine_info(), ROUNDS))


@pytest.mark.benchmark(timer=TIMER, disable_gc=True)
@pytest.mark.parametrize("op,size,mode,impl", CASES, ids=["-".join(c) for c in CASES])
def test_kernels(benchmark, op, size, mode, impl):
    fn = _impl(op, impl)
    _check(op, size, mode, fn)  # also warms up (torch.compile and Triton compile here)
    run = _runner(op, fn, _inputs(op, size, torch.float32, mode == "fwd+bwd"), mode)
    benchmark.group = f"kernels {op} {size} {mode}"
    benchmark.extra_info.update(op=op, size=size, mode=mode, impl=impl, timer="cuda-events")
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    us = benchmark.stats.stats.median * 1e6
    try:  # the same call's GPU work without host overhead (CUDA graph replay), L2 cold
        one_set = sum(t.nbytes for t in _inputs(op, size, torch.float32, False))
        sets = rotation_sets(one_set, l2_cache_bytes())
        rg = mode == "fwd+bwd"
        runs = [
            _runner(op, fn, _inputs(op, size, torch.float32, rg, seed=k), mode) for k in range(sets)
        ]
        benchmark.extra_info["device_time_input_sets"] = sets
        device_us = device_time_us(runs)
    except Exception as exc:  # report it; the latency benchmark above still stands
        device_us = None
        benchmark.extra_info["device_time_error"] = repr(exc)[:300]
    row = _RESULTS.setdefault((op, size, mode), {})
    row[impl] = {"us": us, "device_us": device_us, "bytes": None}
    benchmark.extra_info.update(median_us=us, device_us=device_us)
    if op == "gated_init":
        s = BENCH_SIZES[size]
        nbytes = gate_bytes(s.B, s.Z, s.P, mode)
        peak, _ = peak_bandwidth_gbs()
        row[impl]["bytes"] = nbytes
        benchmark.extra_info.update(bytes=nbytes, peak_gbs=peak, gbs=nbytes / (us * 1e-6) / 1e9)
        if device_us:
            benchmark.extra_info["device_gbs"] = nbytes / (device_us * 1e-6) / 1e9
    if impl == "triton":
        for base in ("eager", "compile"):
            if base in row:
                benchmark.extra_info[f"{base}_over_triton"] = row[base]["us"] / us
                if device_us and row[base]["device_us"]:
                    ratio = row[base]["device_us"] / device_us
                    benchmark.extra_info[f"{base}_over_triton_device"] = ratio
        benchmark.extra_info["targets"] = TARGETS
        _write_table()
