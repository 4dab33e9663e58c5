"""Small pieces shared by the Triton kernels: activations through ``exp`` and dtype handling.

The interpreter (``TRITON_INTERPRET=1``) has no libdevice, so ``tanh`` and ``sigmoid`` are
written with ``tl.exp`` only. Kernels compute in the dtype of their inputs, which the
launchers restrict to float32 or float64 (half inputs are upcast to float32 on the host).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any

import torch
import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    """tanh(x) = sign(x)·(1 − e^{−2|x|}) / (1 + e^{−2|x|}); e^{−2|x|} ≤ 1 never overflows."""
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit
def _sigmoid(x):
    """σ(x) through exp with the exponent kept ≤ 0, so neither branch overflows."""
    t = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + t), t / (1.0 + t))


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are computed in float32)."""
    dtypes = {t.dtype for t in tensors}
    for t in dtypes:
        if not t.is_floating_point:
            raise TypeError(f"the Triton kernels take floating-point tensors, got {t}")
    return torch.float64 if torch.float64 in dtypes else torch.float32


def prepare(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Contiguous and in the compute dtype (no copy, and no dispatch, when it already is)."""
    if t.dtype == dtype and t.is_contiguous():
        return t
    return t.to(dtype).contiguous()


# Host-side integer helpers. triton.cdiv and triton.next_power_of_2 are JIT-callable
# functions whose host calls cost microseconds each: too slow for a per-call launcher.
def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@functools.lru_cache(maxsize=64)
def split_float(x: float) -> tuple[float, float]:
    """A Python float as a float32 pair hi + lo, exact to about 1e-14 relative.

    Triton passes Python floats as float32; kernels that run in float64 add the pair back.
    """
    hi = _to_f32(x)
    return hi, _to_f32(x - hi)


def _to_f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def triton_ptr_type(dtype: torch.dtype) -> str:
    return {torch.float32: "*fp32", torch.float64: "*fp64"}[dtype]


@dataclass(frozen=True)
class CompileSpec:
    """One kernel specialisation to compile for a GPU target without a GPU (tests/)."""

    name: str
    fn: Any
    signature: dict[str, str]
    constexprs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
