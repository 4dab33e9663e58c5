"""The numerics policy of reproduction runs on a GPU (docs/PROTOCOL.md §6 "Numerics on a GPU").

By default a job computes in full float32: TF32 off for matrix products and for cuDNN (an
Ampere-or-newer GPU otherwise rounds float32 inputs to 10 mantissa bits, 0.1-1% relative),
cuDNN's autotuning off and its deterministic algorithms on, so that the same job on the same
GPU, torch and driver gives the same numbers, resumed or not. ``HSMLBENCH_ALLOW_TF32=1``
allows TF32 and autotuning for speed; either way every raw record's provenance holds the
flags in force (``hsmlbench.results.provenance.numerics_flags``). On a CPU none of these
switches changes anything.
"""

from __future__ import annotations

import os

import torch

ALLOW_TF32_ENV = "HSMLBENCH_ALLOW_TF32"


def tf32_allowed() -> bool:
    value = os.environ.get(ALLOW_TF32_ENV, "0").strip().lower()
    if value not in ("0", "1", "false", "true", "no", "yes", ""):
        raise ValueError(f"{ALLOW_TF32_ENV}={value!r}: use 1 (allow TF32) or 0 (the default)")
    return value in ("1", "true", "yes")


def apply_numerics_policy() -> dict:
    """Sets the policy for this process (before a job builds its model) and returns it."""
    fast = tf32_allowed()
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast
    torch.backends.cudnn.benchmark = fast
    torch.backends.cudnn.deterministic = not fast
    torch.set_float32_matmul_precision("high" if fast else "highest")
    return {"allow_tf32": fast}
