"""A sweep of ``gated_init``'s block sizes and launch options on a CUDA GPU, to choose the
defaults in ``_gated_init_triton._config`` from measurements.

    python -m hsmlbench.kernels.sweep                 # writes results/kernel_sweep.md

For each image benchmark size (B = 4 and 32, Z = 256, P = 32,645) and direction (forward;
backward alone), every candidate config is first checked against the float64 twin (float32,
within the benchmarks' bound), then its device time is taken from a CUDA graph whose calls
cycle through input sets larger than twice the L2 (``bench.device_time_us``). The table lists
each size and direction fastest first, with GB/s against the card's peak and the current
default marked. Candidates vary the P tile, warps and a register cap, the knobs that set
occupancy (``python -m hsmlbench.kernels.compile_report`` shows registers per config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hsmlbench.kernels._gated_init_triton import _config, gated_init_backward, gated_init_forward
from hsmlbench.kernels.bench import (
    BENCH_SIZES,
    assert_float32_close,
    device_time_us,
    gate_bytes,
    gate_inputs,
    l2_cache_bytes,
    machine_info,
    peak_bandwidth_gbs,
    rotation_sets,
)
from hsmlbench.kernels.gated_init import gated_init_torch

DIRECTIONS = ("fwd", "bwd")


def candidates(B: int, dtype: torch.dtype, direction: str) -> list[dict]:
    """The default config first, then P tiles 32/64/128 × 4/8 warps × register cap or not."""
    default = dict(_config(B, dtype, backward=direction == "bwd"))
    found = [default]
    for block_p in (32, 64, 128):
        for warps in (4, 8):
            for cap in (None, 128):
                cfg = {k: v for k, v in default.items() if k != "maxnreg"}
                cfg.update(BP=block_p, num_warps=warps)
                if cap is not None:
                    cfg["maxnreg"] = cap
                if cfg not in found:
                    found.append(cfg)
    return found


def _launch(direction: str, inputs, gout, cfg):
    if direction == "fwd":
        return (gated_init_forward(*inputs, config=cfg),)
    return gated_init_backward(*inputs, gout, config=cfg)


def _twin(direction: str, inputs, gout):
    leaves = [t.detach().requires_grad_(direction == "bwd") for t in inputs]
    out = gated_init_torch(*leaves)
    if direction == "fwd":
        return (out.detach(),)
    return torch.autograd.grad(out, leaves, gout)


def check(direction: str, B: int, Z: int, P: int, cfg: dict, device) -> None:
    """Raises AssertionError if ``cfg`` gives other numbers than the twin
    (``bench.assert_float32_close``)."""
    inputs = gate_inputs(B, Z, P, device=device, seed=3)
    ref_inputs = gate_inputs(B, Z, P, dtype=torch.float64, device=device, seed=3)
    gen = torch.Generator().manual_seed(4)
    gout64 = torch.randn((B, P), generator=gen, dtype=torch.float64).to(device)
    got = _launch(direction, inputs, gout64.float(), cfg)
    twin = _twin(direction, inputs, gout64.float())
    ref = _twin(direction, ref_inputs, gout64)
    for i, (g, t, r) in enumerate(zip(got, twin, ref, strict=True)):
        assert_float32_close(g, t, r, f"{direction} output {i} with {cfg}")


def sweep(sizes: list[str]) -> list[dict]:
    """Checks and times every candidate; one row per (size, direction, config)."""
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    peak, _ = peak_bandwidth_gbs()
    rows = []
    for size in sizes:
        s = BENCH_SIZES[size]
        one_set = sum(t.nbytes for t in gate_inputs(s.B, s.Z, s.P))
        sets = rotation_sets(one_set, l2_cache_bytes())
        data = [gate_inputs(s.B, s.Z, s.P, device=device, seed=k) for k in range(sets)]
        gouts = [torch.randn((s.B, s.P), device=device) for _ in range(sets)]
        for direction in DIRECTIONS:
            nbytes = gate_bytes(s.B, s.Z, s.P, "fwd") if direction == "fwd" else (
                gate_bytes(s.B, s.Z, s.P, "fwd+bwd") - gate_bytes(s.B, s.Z, s.P, "fwd")
            )  # fmt: skip
            for i, cfg in enumerate(candidates(s.B, torch.float32, direction)):
                row = {"size": size, "direction": direction, "default": i == 0, **cfg}
                try:
                    check(direction, s.B, s.Z, s.P, cfg, device)
                    runs = [
                        (lambda x=x, g=g, c=cfg, d=direction: _launch(d, x, g, c))
                        for x, g in zip(data, gouts, strict=True)
                    ]
                    us = device_time_us(runs)
                    row.update(us=us, gbs=nbytes / (us * 1e-6) / 1e9)
                    row["peak_fraction"] = row["gbs"] / peak if peak == peak else None
                except Exception as error:  # a config that fails to compile or to match
                    row["error"] = " ".join(str(error).split())[:160]
                rows.append(row)
                print(_row_text(row), flush=True)
    return rows


def _row_text(row: dict) -> str:
    knobs = f"BP={row['BP']} BZ={row['BZ']} warps={row['num_warps']} cap={row.get('maxnreg')}"
    head = f"{row['size']} {row['direction']} {knobs}{' (default)' if row['default'] else ''}"
    if "error" in row:
        return f"{head}: FAILED {row['error']}"
    return f"{head}: {row['us']:.1f} µs, {row['gbs']:.0f} GB/s"


def render_markdown(rows: list[dict], info: dict) -> str:
    from tabulate import tabulate

    ordered = sorted(
        rows, key=lambda r: (r["size"], r["direction"], "error" in r, r.get("us", 0.0))
    )
    table = [
        [
            r["size"], r["direction"], r["BP"], r["BZ"], r["num_warps"], r.get("num_stages"),
            r.get("maxnreg") or "–", "default" if r["default"] else "",
            r.get("error") or f"{r['us']:.1f}", "" if "error" in r else f"{r['gbs']:.0f}",
            "" if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.0f}",
        ]
        for r in ordered
    ]  # fmt: skip
    headers = [
        "size", "direction", "BP", "BZ", "warps", "stages", "register cap", "", "device µs",
        "GB/s", "% of peak",
    ]  # fmt: skip
    return "\n".join(
        [
            "# gated_init config sweep",
            "",
            "Generated by `python -m hsmlbench.kernels.sweep`; do not edit by hand.",
            "",
            f"- GPU: {info.get('gpu', '?')}, CUDA {info.get('cuda', '?')}, torch "
            f"{info['torch']}, triton {info['triton']}",
            "- float32; device time per call from CUDA-graph replay, inputs rotated through "
            "more than twice the L2; GB/s counts the fewest bytes each direction must move",
            "",
            tabulate(table, headers=headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmlbench.kernels.sweep")
    parser.add_argument("--sizes", nargs="+", default=["image-B4", "image-B32"])
    parser.add_argument("--out", type=Path, default=Path("results") / "kernel_sweep.md")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("the sweep times kernels on a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    unknown = [s for s in args.sizes if s not in BENCH_SIZES]
    if unknown:
        print(f"unknown size {unknown[0]!r}; known: {', '.join(BENCH_SIZES)}", file=sys.stderr)
        return 2
    rows = sweep(args.sizes)
    from hsmlbench.kernels.bench import write_report

    write_report(args.out, render_markdown(rows, machine_info()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
