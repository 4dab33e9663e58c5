"""Input factories, sizes, CUDA-event timing and the results table for the kernel benchmarks.

The tests (``tests/interpreter``) and the benchmarks (``suites/test_kernels_bench.py``) draw
their inputs from the same factories here, so both exercise the same distributions.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

# ---------------------------------------------------------------------------- inputs


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _glorot(
    shape: tuple[int, ...], fan_in: int, fan_out: int, gen: torch.Generator
) -> torch.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * limit


def tree_inputs(
    B: int,
    d: int,
    K1: int,
    K2: int = 2,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, ...]:
    """(h, centres, w1, b1, w2, b2, u, ub, r, rb) for ``soft_assign_tree``
    (docs/PROTOCOL.md §3 step 2).

    Glorot-uniform tree parameters as in the paper; biases small but non-zero so that tests
    see them; task vectors h ~ N(0, 1).
    """
    g = _generator(seed)
    tensors = (
        torch.randn((B, d), generator=g, dtype=torch.float64),
        _glorot((K1, d), K1, d, g),
        _glorot((K1, d, d), d, d, g),
        _glorot((K1, d), d, d, g) * 0.2,
        _glorot((d, K2), d, K2, g),
        _glorot((K2,), d, K2, g) * 0.2,
        _glorot((K2, d, d), d, d, g),
        _glorot((K2, d), d, d, g) * 0.2,
        _glorot((d, d), d, d, g),
        _glorot((d,), d, d, g) * 0.2,
    )
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in tensors)


def gate_inputs(
    B: int,
    Z: int,
    P: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, ...]:
    """(z, weight, bias, theta0) for ``gated_init`` (docs/PROTOCOL.md §3 step 3).

    W ~ N(0, 1/Z) so the gates spread over (0, 1) instead of all sitting at 1/2.
    """
    g = _generator(seed)
    tensors = (
        torch.randn((B, Z), generator=g, dtype=torch.float64),
        torch.randn((Z, P), generator=g, dtype=torch.float64) / math.sqrt(max(Z, 1)),
        torch.rand((P,), generator=g, dtype=torch.float64) - 0.5,
        torch.randn((P,), generator=g, dtype=torch.float64),
    )
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in tensors)


def assert_float32_close(got, twin, ref, label: str) -> None:
    """``got`` (a float32 kernel result) is as close to the float64 reference ``ref`` as the
    float32 twin ``twin`` is, within a factor 8, plus 1e-5 of the reference's scale."""
    assert torch.isfinite(got).all(), f"{label}: non-finite"
    ref = ref.double()
    err = (got.double() - ref).abs().max().item()
    twin_err = (twin.double() - ref).abs().max().item()
    bound = 8.0 * twin_err + 1e-5 * (ref.abs().max().item() + 1.0)
    assert err <= bound, (
        f"{label}: error {err:.3g} vs float64 > {bound:.3g} (twin's {twin_err:.3g})"
    )


# ---------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class BenchSize:
    """One benchmark size. Z = 2d: the gate reads z = [h; h_root] (docs/PROTOCOL.md §3 step 3)."""

    name: str
    B: int
    d: int
    K1: int
    K2: int
    P: int

    @property
    def Z(self) -> int:
        return 2 * self.d


# regression: meta-batch 25, d = 40, 4 → 2 → 1 tree, MLP 1-40-40-1 has 1,761 parameters (§3);
# image: d = 128 and the conv learner's 32,645 parameters at meta-batch 4 and 32 (docs/PROTOCOL.md §4).
BENCH_SIZES = {
    "regression": BenchSize("regression", B=25, d=40, K1=4, K2=2, P=1761),
    "image-B4": BenchSize("image-B4", B=4, d=128, K1=4, K2=2, P=32645),
    "image-B32": BenchSize("image-B32", B=32, d=128, K1=4, K2=2, P=32645),
}


def gate_bytes(B: int, Z: int, P: int, mode: str, itemsize: int = 4) -> int:
    """Fewest bytes ``gated_init`` must move: each input read once, each output written once."""
    fwd = B * Z + Z * P + 2 * P + B * P
    if mode == "fwd":
        return fwd * itemsize
    # backward reads z, W, b, θ0 and g_out again and writes dz, dW, db, dθ0
    bwd = (B * Z + Z * P + 2 * P + B * P) + (B * Z + Z * P + 2 * P)
    return (fwd + bwd) * itemsize


# ---------------------------------------------------------------------------- timing


class CudaEventTimer:
    """A pytest-benchmark timer read from CUDA events, so device work is what gets timed.

    Each call records an event and waits for it; the returned clock advances by the
    device time between consecutive calls, so ``end − start`` is the event interval around
    the benchmarked call (host launch overhead included when the device sits waiting).
    Two events, created once, alternate so no allocation falls inside the interval.
    """

    def __init__(self) -> None:
        self._events = None
        self._calls = 0
        self._clock = 0.0

    def __call__(self) -> float:
        if self._events is None:
            self._events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        event = self._events[self._calls % 2]
        event.record()
        event.synchronize()
        if self._calls:
            self._clock += self._events[(self._calls - 1) % 2].elapsed_time(event) / 1e3
        self._calls += 1
        return self._clock


def l2_cache_bytes(device: int | torch.device = 0) -> int:
    """The GPU's L2 cache size in bytes (50 MiB, an H100's, where torch does not say)."""
    return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20))


def rotation_sets(bytes_per_call: int, l2_bytes: int, most: int = 16) -> int:
    """How many distinct input sets a timing loop cycles through so that together they
    hold at least twice the L2 cache: each call then reads its inputs from DRAM, as the
    first call of a training step does, instead of from the L2 that the previous
    identical call filled (an image-size W, 33 MB, fits in an H100's 50 MB L2). Capped at
    ``most``: tiny inputs stay cache-resident whatever we do, as they do in training."""
    if bytes_per_call <= 0:
        return 1
    return max(1, min(most, math.ceil(2 * l2_bytes / bytes_per_call) + 1))


def device_time_us(runs, copies: int = 20, replays: int = 10) -> float:
    """Device time of one call in µs, without host launch overhead.

    ``runs``: one zero-argument callable, or several (the same op on distinct input sets,
    see ``rotation_sets``), called in turn. At least ``copies`` back-to-back calls (a
    multiple of ``len(runs)``) are captured into one CUDA graph, after a warm-up on a side
    stream, as graph capture of autograd requires; the graph's replays are timed with CUDA
    events. Raises if a call cannot be captured.
    """
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    copies = math.ceil(max(copies, len(runs)) / len(runs)) * len(runs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for run in runs:
                run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(copies):
            runs[i % len(runs)]()
    graph.replay()  # warm
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    elapsed_us = start.elapsed_time(end) * 1e3 / (replays * copies)
    del graph
    return elapsed_us


_PEAK_BANDWIDTH_GBS = {  # datasheet fallbacks, GB/s
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H200": 4800.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-SXM4-40GB": 1555.0,
    "A100 80GB PCIe": 1935.0,
}


def peak_bandwidth_gbs(device: int | torch.device = 0) -> tuple[float, str]:
    """Peak DRAM bandwidth of a CUDA device in GB/s, and where the number came from."""
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9, "2 × memory clock × bus width"
    for key, value in _PEAK_BANDWIDTH_GBS.items():
        if key in props.name:
            return value, "datasheet"
    return float("nan"), "unknown"


def machine_info() -> dict:
    import triton

    info = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        peak, source = peak_bandwidth_gbs(0)
        info.update(
            gpu=props.name,
            sms=props.multi_processor_count,
            cuda=torch.version.cuda,
            peak_gbs=peak,
            peak_source=source,
        )
    return info


# ---------------------------------------------------------------------------- table

TARGETS = {"vs_eager": 3.0, "vs_compile": 1.5, "gate_fwd_peak_fraction": 0.60}


def _verdicts(op: str, size: str, mode: str, vs_eager, vs_compile, frac) -> str:
    out = []
    if mode == "fwd+bwd":
        if vs_eager is not None:
            ok = vs_eager >= TARGETS["vs_eager"]
            out.append(f"≥{TARGETS['vs_eager']:g}× eager: {'met' if ok else 'MISSED'}")
        if vs_compile is not None:
            ok = vs_compile >= TARGETS["vs_compile"]
            out.append(f"≥{TARGETS['vs_compile']:g}× compile: {'met' if ok else 'MISSED'}")
    if op == "gated_init" and mode == "fwd" and size.startswith("image") and frac is not None:
        ok = frac >= TARGETS["gate_fwd_peak_fraction"]
        out.append(f"≥60% peak BW: {'met' if ok else 'MISSED'}")
    return "; ".join(out) or "–"


def _table(results: dict, key: str, peak: float) -> str:
    from tabulate import tabulate

    def fmt(x, spec):
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    rows = []
    for (op, size, mode), by_impl in results.items():
        us = {i: by_impl.get(i, {}).get(key) for i in ("eager", "compile", "triton")}
        tri = us["triton"]
        vs_eager = us["eager"] / tri if tri and us["eager"] else None
        vs_compile = us["compile"] / tri if tri and us["compile"] else None
        nbytes = by_impl.get("triton", {}).get("bytes")
        gbs = nbytes / (tri * 1e-6) / 1e9 if nbytes and tri else None
        frac = gbs / peak if gbs is not None and peak == peak else None
        rows.append([
            op, size, mode, fmt(us["eager"], ".1f"), fmt(us["compile"], ".1f"), fmt(tri, ".1f"),
            fmt(vs_eager, ".2f"), fmt(vs_compile, ".2f"), fmt(gbs, ".0f"),
            fmt(None if frac is None else 100 * frac, ".0f"),
            _verdicts(op, size, mode, vs_eager, vs_compile, frac),
        ])  # fmt: skip
    headers = [
        "op", "size", "mode", "eager µs", "torch.compile µs", "triton µs", "eager / triton",
        "compile / triton", "triton GB/s", "% of peak BW", "targets",
    ]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_markdown(results: dict, info: dict, rounds: int) -> str:
    """The benchmark tables: one row per (op, size, mode), the implementations side by side.

    ``results[(op, size, mode)][impl]`` holds ``us`` (median per-call latency), ``device_us``
    (device time from CUDA-graph replay, or None) and ``bytes`` (gated_init's minimum traffic).
    """
    peak = info.get("peak_gbs", float("nan"))
    peak_txt = "–" if peak != peak else f"{peak:.0f}"
    lines = [
        "# Kernel benchmarks",
        "",
        "Generated by `pytest suites/ --benchmark-only -k kernels` (suites/test_kernels_bench.py); "
        "do not edit by hand.",
        "",
        f"- GPU: {info.get('gpu', '?')} ({info.get('sms', '?')} SMs), CUDA {info.get('cuda', '?')}",
        f"- torch {info['torch']}, triton {info['triton']}, Python {info['python']}",
        f"- peak DRAM bandwidth {peak_txt} GB/s ({info.get('peak_source', '?')})",
        "- float32; every implementation is checked against the twin and a float64 reference "
        "before it is timed",
        "- sizes: regression B=25, d=40, K1=4, K2=2, P=1,761; image d=128, K1=4, K2=2, "
        "P=32,645 at B=4 and B=32; Z = 2d",
        "- GB/s counts the fewest bytes the op must move (inputs read once, outputs written "
        "once); fwd+bwd counts W read twice (forward, backward) and dW written once",
        "- targets: fwd+bwd ≥ 3× eager and ≥ 1.5× torch.compile at every size; "
        "gated_init fwd at the image sizes ≥ 60 % of peak bandwidth",
        "",
        "## Per-call latency (the pytest-benchmark numbers)",
        "",
        f"Median of {rounds} rounds; each round is one call, timed by CUDA events recorded just "
        "before and after it on an idle device, so host-side launch overhead is included. "
        "At these sizes that overhead dominates.",
        "",
        _table(results, "us", peak),
        "",
        "## Device time",
        "",
        "At least 20 back-to-back calls captured in one CUDA graph, replayed 10 times and "
        "timed by CUDA events: the GPU work of one call without host launch overhead. The "
        "calls cycle through distinct input sets holding together at least twice the L2 "
        "cache (at most 16 sets), so that gated_init's W comes from DRAM, not from the L2 "
        "that the previous identical call filled.",
        "",
        _table(results, "device_us", peak),
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, text: str) -> None:
    """A kernel report written atomically (a temporary file renamed over ``path``); kernels/
    imports nothing from the rest of hsmlbench, so it does not use ``hsmlbench.atomic``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(f.name, 0o644)  # a report for everyone to read, not the temporary file's 0600
    os.replace(f.name, path)
