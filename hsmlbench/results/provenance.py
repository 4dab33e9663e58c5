"""The one probe of where and with what a job ran: git, library versions, the device, and the
numerics flags that change results on a GPU (docs/PROTOCOL.md §6 "Provenance").

Recorded when a job starts (a resumed job records its own start again: the checkpoint's code
tag guarantees the code did not change in between).
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=_PACKAGE_ROOT, check=False
    )


def git_state(sources: Iterable[Path]) -> dict:
    """The commit checked out and whether any of ``sources`` (the job-defining files) differ
    from it (edits to results, docs or report code do not count); "unknown" / None outside a
    git checkout."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "job_code_modified": None}
        diff = _git("diff", "--quiet", "HEAD", "--", *map(str, sources))
    except OSError:
        return {"commit": "unknown", "job_code_modified": None}
    return {"commit": head.stdout.strip(), "job_code_modified": diff.returncode != 0}


def device_name(device: str) -> str:
    if not device.startswith("cuda"):
        threads = torch.get_num_threads()
        cpu = platform.processor() or platform.machine()
        return f"CPU ({cpu}, {threads} thread{'s' if threads != 1 else ''})"
    return torch.cuda.get_device_name(torch.device(device))


def numerics_flags() -> dict:
    """The switches that decide a GPU's floating-point results (TF32, cuDNN autotuning and
    determinism); recorded on every device so that two files can be compared."""
    return {
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _version(distribution: str) -> str | None:
    """An installed package's version, read from its metadata (importing Triton here would
    fix its interpreter mode before a test or kernel could choose it)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def probe(device: str, sources: Iterable[Path]) -> dict:
    """Everything a raw record says about the run's code and machine, taken now."""
    return {
        **git_state(sources),
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "triton": _version("triton"),
        "device": device_name(str(device)),
        "numerics": numerics_flags(),
    }
