"""Which meta-step computes the regression meta-gradient (docs/PROTOCOL.md §3
"Meta-training"), and compiling it safely.

- ``"autograd"``: the reference. Each inner step differentiates the support loss with
  ``create_graph=True``; the meta-gradient is a double backward through the inner loop.
- ``"fast"``: the same second-order meta-gradient, exactly, from an inner loop whose gradients
  are explicit tensor ops (``base_learners.mlp_mse_grads``). The meta-step is then a
  first-order graph, which ``torch.compile`` compiles (a double backward cannot be compiled).

The path is part of a job's identity (``RunConfig.meta_step``): a job is never reused or
resumed across paths. ``HSMLBENCH_META_STEP=fast|autograd`` overrides the config default;
``HSMLBENCH_COMPILE=0`` keeps the fast path eager (tests, or a machine whose compiler fails).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

META_STEPS = ("fast", "autograd")
DEFAULT_META_STEP = "fast"
META_STEP_ENV_VAR = "HSMLBENCH_META_STEP"
COMPILE_ENV_VAR = "HSMLBENCH_COMPILE"


def meta_step_from_env(default: str = DEFAULT_META_STEP) -> str:
    """The meta-step a new regression config gets: ``HSMLBENCH_META_STEP`` or ``default``."""
    value = os.environ.get(META_STEP_ENV_VAR, "").strip().lower() or default
    check_meta_step(value, f"{META_STEP_ENV_VAR}={value!r}")
    return value


def check_meta_step(value: str, where: str = "meta_step") -> None:
    if value not in META_STEPS:
        raise ValueError(f"{where}: choose one of {', '.join(META_STEPS)}")


def compile_enabled() -> bool:
    value = os.environ.get(COMPILE_ENV_VAR, "1").strip().lower()
    if value not in ("0", "1"):
        raise ValueError(f"{COMPILE_ENV_VAR}={value!r}: use 1 (compile the fast step) or 0")
    return value == "1"


class CompiledWithFallback:
    """``fn`` compiled with ``torch.compile`` on first use, or ``fn`` itself when compiling is
    off or fails (one warning line on stderr, never a traceback).

    ``fn`` must be pure (no side effects), so a call whose compilation fails can be re-run
    eagerly. An error that eager execution raises too is a real error and propagates.
    ``state`` says which ran: "compiled", "eager (...why...)" or "not called yet".
    """

    def __init__(self, fn: Callable, name: str) -> None:
        self.fn, self.name = fn, name
        self.compiled: Callable | None = None
        self.state = "not called yet"
        self.allowed = True  # False: never compile (e.g. a run too short to repay compiling)

    def __call__(self, *args, **kwargs):
        if self.state == "not called yet":
            if not self.allowed:
                self.state = "eager (run too short to repay compiling)"
            elif compile_enabled():
                import torch  # here, so that configs can read the path without importing torch

                self.compiled = torch.compile(self.fn, dynamic=False)
                self.state = "compiled"
            else:
                self.state = f"eager ({COMPILE_ENV_VAR}=0)"
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure: fall back
            failure = error
        result = self.fn(*args, **kwargs)  # raises (uncompiled) if the error was a real one
        first_line = (str(failure).strip().splitlines() or [""])[0][:200]
        reason = f"{type(failure).__name__}: {first_line}"
        print(
            f"hsmlbench: warning: torch.compile of the {self.name} failed ({reason}); "
            "continuing with the same math uncompiled",
            file=sys.stderr,
            flush=True,
        )
        self.compiled, self.state = None, f"eager (torch.compile failed: {reason})"
        return result
