"""What each Triton kernel costs in registers, stack (spills) and shared memory on a GPU
target, found on a machine without a GPU.

Every kernel is compiled as its launcher specialises it, with ``triton.compile`` for
``GPUTarget("cuda", arch, 32)`` (TTIR → … → PTX → cubin, with the ptxas bundled with
triton), and the cubin's resource usage is read with the bundled ``cuobjdump``. Register
pressure is what limits these kernels' occupancy, and so their bandwidth, so this is the
first thing to look at when a kernel is slow, and it needs no GPU:

    python -m hsmlbench.kernels.compile_report            # writes results/kernel_resources.md

``tests/test_kernel_compile.py`` runs the same compilation in CI. Must run without
``TRITON_INTERPRET`` (the interpreter does not compile).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHS = (80, 90)
REGISTERS_PER_SM = 65536  # sm_80 and sm_90
MAX_WARPS_PER_SM = 64  # sm_80 and sm_90
_RESOURCES = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def compile_cases():
    """(label, CompileSpec) for every kernel at the sizes that matter: the image size
    (d = 128) with the largest K1 (10), both float types, both gated_init batch tiles
    (B = 4 and 32), and the regression size (d = 40, K1 = 4)."""
    import torch
    from hsmlbench.kernels import _gated_init_triton as gate
    from hsmlbench.kernels import _soft_assign_tree_triton as tree

    cases = []
    for dtype in (torch.float32, torch.float64):
        name = str(dtype).removeprefix("torch.")
        cases += [
            (f"{s.name}[{name}, d=128, K1=10]", s) for s in tree.compile_specs(dtype, 128, 10)
        ]
        cases += [(f"{s.name}[{name}, B=32]", s) for s in gate.compile_specs(dtype, B=32)]
    cases += [
        (f"{s.name}[float32, d=40, K1=4]", s) for s in tree.compile_specs(torch.float32, 40, 4)
    ]
    cases += [(f"{s.name}[float32, B=4]", s) for s in gate.compile_specs(torch.float32, B=4)]
    return cases


def _cuobjdump() -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")


def resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers per thread, stack and local bytes per thread, static shared bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cubin"
        path.write_bytes(cubin)
        listing = subprocess.run(
            [_cuobjdump(), "-res-usage", str(path)], capture_output=True, text=True, check=True
        ).stdout
    match = _RESOURCES.search(listing)
    if match is None:
        raise RuntimeError(f"no resource usage in cuobjdump's listing:\n{listing[-2000:]}")
    registers, stack, shared, local = (int(v) for v in match.groups())
    return {"registers": registers, "stack": stack, "static_shared": shared, "local": local}


def warps_per_sm(registers: int, num_warps: int) -> int:
    """Resident warps per SM that the register file allows (other limits ignored); each
    warp's registers are allocated in units of 256, i.e. 8 per thread."""
    per_block = (max(registers, 1) + 7) // 8 * 8 * 32 * num_warps
    return min(REGISTERS_PER_SM // per_block, MAX_WARPS_PER_SM // num_warps) * num_warps


def compile_all(arch: int) -> list[dict]:
    """Compiles every case for ``sm_<arch>``; one entry per kernel with its resources."""
    if os.environ.get("TRITON_INTERPRET"):
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter does not compile kernels")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    report = []
    for label, spec in compile_cases():
        compiled = triton.compile(
            ASTSource(spec.fn, spec.signature, spec.constexprs),
            target=GPUTarget("cuda", arch, 32),
            options=spec.options,
        )
        cubin = compiled.asm.get("cubin", b"")
        entry = {
            "kernel": label,
            "arch": arch,
            "stages": sorted(compiled.asm),
            "cubin_bytes": len(cubin),
            "shared": compiled.metadata.shared,
            "num_warps": compiled.metadata.num_warps,
            "expected_warps": spec.options.get("num_warps", 4),
            "maxnreg": spec.options.get("maxnreg"),
        }
        if cubin:
            entry.update(resource_usage(cubin))
            entry["warps_per_sm"] = warps_per_sm(entry["registers"], entry["num_warps"])
        report.append(entry)
    return report


def render_markdown(reports: list[dict]) -> str:
    import triton
    from tabulate import tabulate

    rows = [
        [
            e["kernel"], f"sm_{e['arch']}", e["num_warps"], e["registers"],
            e["maxnreg"] or "–", e["stack"], e["local"], e["shared"],
            f"{e['warps_per_sm']} ({100 * e['warps_per_sm'] / MAX_WARPS_PER_SM:.0f} %)",
        ]
        for e in reports
    ]  # fmt: skip
    headers = [
        "kernel", "target", "warps/block", "registers/thread", "register cap", "stack B/thread",
        "local B/thread", "shared B/block", "warps/SM by registers (occupancy)",
    ]  # fmt: skip
    return "\n".join(
        [
            "# Triton kernels: registers, spills and occupancy (static, no GPU)",
            "",
            "Generated by `python -m hsmlbench.kernels.compile_report` "
            f"(triton {triton.__version__}, its bundled ptxas and cuobjdump); do not edit by hand.",
            "",
            "- Each kernel compiled as its launcher specialises it, for sm_80 (A100) and "
            "sm_90 (H100), with `triton.compile`.",
            "- A non-zero stack or local size means the kernel spills registers to memory.",
            "- Warps/SM by registers: how many warps the 64K-register file lets one SM hold "
            "(of 64); a memory-bound kernel needs enough of them to hide DRAM latency.",
            "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmlbench.kernels.compile_report")
    parser.add_argument("--out", type=Path, default=Path("results") / "kernel_resources.md")
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS))
    args = parser.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the launchers' default
    reports = [entry for arch in args.arch for entry in compile_all(arch)]
    from hsmlbench.kernels.bench import write_report

    write_report(args.out, render_markdown(reports))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
