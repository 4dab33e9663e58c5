"""The Triton interpreter tests run as their own pytest process.

    TRITON_INTERPRET=1 HSMLBENCH_KERNELS=triton python -m pytest tests/interpreter

``TRITON_INTERPRET`` must be set before anything imports triton (torch._dynamo and
torch._inductor import it too), so it cannot be switched on from inside a test session.
Collected in any other process, every test here is skipped and says why.
"""

from __future__ import annotations

import os

import pytest

INTERPRETER_ON = os.environ.get("TRITON_INTERPRET") == "1"
REASON = (
    "needs Triton's interpreter: run `TRITON_INTERPRET=1 HSMLBENCH_KERNELS=triton "
    "python -m pytest tests/interpreter` as its own process (TRITON_INTERPRET must be set "
    "before triton is imported)"
)


def pytest_collection_modifyitems(config, items):
    if INTERPRETER_ON:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    skip = pytest.mark.skip(reason=REASON)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(skip)


def _assert_matches_twin(name, got, twin, ref64):
    """float64: equal to the twin up to rounding. float32: no worse than the twin's own float32
    error against the float64 reference, up to a small factor (STYLE.md: judge low precision
    by PyTorch's error in the same precision)."""
    import torch

    assert got.shape == twin.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(twin.shape)}"
    assert got.dtype == twin.dtype, f"{name}: dtype {got.dtype} vs {twin.dtype}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    if got.dtype == torch.float64:
        torch.testing.assert_close(got, twin, rtol=1e-9, atol=1e-11, msg=lambda m: f"{name}: {m}")
        return
    ref = ref64.detach().to(torch.float64)
    err = (got.detach().to(torch.float64) - ref).abs().max().item()
    twin_err = (twin.detach().to(torch.float64) - ref).abs().max().item()
    bound = 4.0 * twin_err + 2e-6 * (ref.abs().max().item() + 1.0)
    assert err <= bound, (
        f"{name}: max error {err:.3g} vs the float64 reference; the float32 twin's is "
        f"{twin_err:.3g} (bound {bound:.3g})"
    )


@pytest.fixture
def assert_matches_twin():
    return _assert_matches_twin
