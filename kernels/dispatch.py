"""Chooses between a Triton kernel and its torch twin.

CUDA tensors with Triton importable take Triton; everything else takes the twin.
``HSMLBENCH_KERNELS=triton|torch`` forces a path. Forcing Triton on CPU tensors runs Triton's
interpreter, which only works when ``TRITON_INTERPRET=1`` was set before triton was imported.
"""

from __future__ import annotations

import importlib.util
import os

import torch

ENV_VAR = "HSMLBENCH_KERNELS"


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_triton(example: torch.Tensor) -> bool:
    """Whether the dispatched ops should run the Triton kernels for tensors like ``example``."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced not in ("", "triton", "torch"):
        raise ValueError(f"{ENV_VAR}={forced!r}: use 'triton', 'torch', or leave it unset")
    if forced == "torch":
        return False
    if forced == "triton":
        if not triton_available():
            raise RuntimeError(f"{ENV_VAR}=triton but triton is not installed: pip install triton")
        if not example.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                f"{ENV_VAR}=triton on CPU tensors needs Triton's interpreter: set "
                "TRITON_INTERPRET=1 before starting Python (it must be set before triton is "
                "imported)"
            )
        return True
    return example.is_cuda and triton_available()
