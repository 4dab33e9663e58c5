"""Every Triton kernel compiles for GPU targets, on a machine without a GPU.

The interpreter (tests/interpreter) accepts code that the GPU compiler rejects, so each
kernel is also compiled, as its launcher specialises it, with ``triton.compile`` for
``GPUTarget("cuda", 80, 32)`` and ``GPUTarget("cuda", 90, 32)``, in a subprocess whose
environment has no ``TRITON_INTERPRET``. This runs the whole pipeline, TTIR → TTGIR → LLVM
IR → PTX → cubin (ptxas: the one bundled with triton), so it needs no GPU and no driver; it
also checks that each kernel's shared memory fits the architecture, that no kernel needs more
registers than its cap, that no float32 kernel spills (nor gated_init, bandwidth-bound, in
float64), and that gated_init's backward fits 128 registers per thread (two 8-warp blocks
per SM); the same numbers are tabulated by ``python -m hsmlbench.kernels.compile_report``. It does not run the
kernels: that needs a GPU (suites/test_kernels_bench.py checks results there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ARCHS = (80, 90)
# largest dynamic shared memory per block (opt-in), bytes: A100 163 KiB, H100 227 KiB
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}

SCRIPT = r"""
import json, sys
from hsmlbench.kernels.compile_report import compile_all
print("REPORT" + json.dumps(compile_all(int(sys.argv[1]))))
"""


@pytest.fixture(scope="module")
def compile_runs(tmp_path_factory):
    """Start one compiler subprocess per architecture at once (they are independent)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton-cache"))  # really compile
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    procs = {
        arch: subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(arch)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for arch in ARCHS
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS, ids=[f"sm_{a}" for a in ARCHS])
def test_kernels_compile_for_gpu(arch, compile_runs):
    out, err = compile_runs[arch].communicate(timeout=900)
    assert compile_runs[arch].returncode == 0, f"compiling for sm_{arch} failed:\n{err[-6000:]}"
    report = json.loads(out.split("REPORT", 1)[1])
    names = {entry["kernel"].split("[")[0] for entry in report}
    assert names == {
        "soft_assign_tree_fwd", "soft_assign_tree_bwd_row", "soft_assign_tree_bwd_weights",
        "gated_init_fwd", "gated_init_bwd",
    }  # fmt: skip
    for entry in report:
        label = f"{entry['kernel']} on sm_{arch}"
        assert "cubin" in entry["stages"] and entry["cubin_bytes"] > 0, f"{label}: no cubin"
        assert entry["shared"] <= SHARED_LIMIT[arch], f"{label}: {entry['shared']} B shared memory"
        assert entry["num_warps"] == entry["expected_warps"], label
        assert entry["registers"] <= (entry["maxnreg"] or 255), label
        # no spills in float32 (every kernel), nor in the bandwidth-bound gated_init at all
        if "[float32" in entry["kernel"] or entry["kernel"].startswith("gated_init"):
            assert entry["stack"] == entry["local"] == 0, f"{label} spills: {entry}"
        if entry["kernel"].startswith("gated_init_bwd"):  # two 8-warp blocks per SM
            assert entry["registers"] <= 128, f"{label}: {entry['registers']} registers"
    float32 = {e["kernel"].split("[")[0] for e in report if "[float32" in e["kernel"]}
    assert float32 == names, f"float32 cases missing: {names - float32}"
