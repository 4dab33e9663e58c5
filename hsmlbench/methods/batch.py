"""What a method receives as a meta-batch: the few fields every domain's batch has.

Methods see tasks through this protocol only, so the regression domain's ``TaskBatch`` and
the image domain's episodes both fit, and ``methods/`` never imports a domain.
"""

from __future__ import annotations

from typing import Protocol

import torch


class TaskBatch(Protocol):
    """A batch of ``n_tasks`` tasks, each with a support and a query set (leading dim: task)."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor

    @property
    def n_tasks(self) -> int: ...

    def slice(self, start: int, stop: int) -> TaskBatch: ...

    def to(self, device: torch.device | str) -> TaskBatch: ...
