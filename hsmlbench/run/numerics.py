"""How a job computes: the numerics policy on a GPU (docs/PROTOCOL.md §6 "Numerics on a
GPU") and the number of CPU threads of a regression job.

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
THREADS_ENV = "HSMLBENCH_THREADS"


def regression_threads() -> int:
    """Torch threads of a regression job: 1 unless ``HSMLBENCH_THREADS`` says more. The
    regression model is tiny (1-40-40-1): a second thread does not help, and when the cores
    are busy (a laptop, another job) its OpenMP barriers spin and one meta-iteration slows
    from ~2.5 ms to hundreds. One thread also keeps a job's numbers independent of the
    machine's core count."""
    value = os.environ.get(THREADS_ENV, "1").strip()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r}: a number of threads, 1 or more")
    return int(value)


def set_job_threads(domain: str) -> None:
    """A regression job's thread count (``regression_threads``); image jobs keep what their
    executor gave them (cores / workers on a CPU)."""
    if domain == "regression":
        torch.set_num_threads(regression_threads())


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
