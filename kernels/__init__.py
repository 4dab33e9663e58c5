"""HSML's hot path as fused Triton kernels, each with a pure-torch twin of the same signature.

Import this package only as ``hsmlbench.kernels`` (the folder is ``kernels/`` at the top
of the repository; a top-level ``kernels`` module would clash with another package).
"""

if __name__ != "hsmlbench.kernels":  # pragma: no cover - guards the one import name
    raise ImportError(
        f"the kernels package was imported as {__name__!r}; import it as 'hsmlbench.kernels' "
        "(install the project with `pip install -e .`)"
    )

from hsmlbench.kernels.gated_init import gated_init, gated_init_torch
from hsmlbench.kernels.soft_assign_tree import soft_assign_tree, soft_assign_tree_torch

__all__ = ["gated_init", "gated_init_torch", "soft_assign_tree", "soft_assign_tree_torch"]
