"""One place that seeds Python, NumPy and torch."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the legacy global state libraries use
    torch.manual_seed(seed)


def task_generator(seed: int) -> torch.Generator:
    """A CPU generator for task sampling: same seed, same tasks on any machine."""
    return torch.Generator(device="cpu").manual_seed(seed)
