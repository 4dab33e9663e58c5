"""What every domain's configs share: budgets, table specs, the evaluation seed, and how a
stored config is matched against a run's.

A domain's own configs (``hsmlbench.domains.regression.configs``,
``hsmlbench.domains.images.configs``) are frozen dataclasses built from a registry keyed by
table and row; values from the paper cite ``docs/PROTOCOL.md`` by section. A budget only
shortens a run (iterations, test tasks); it never changes the method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Evaluation tasks come from their own fixed seed so every method sees the same tasks
# (docs/PROTOCOL.md §3 "Evaluation", §5). The value is the paper's arXiv number.
EVAL_SEED = 1905_05301


@dataclass(frozen=True)
class Budget:
    """How long a run is: iterations of meta-training and number of test tasks."""

    name: str
    iterations: int
    n_test_tasks: int
    checkpoint_every: int
    description: str


@dataclass(frozen=True)
class TableSpec:
    """A table: its methods (rows) and settings (columns)."""

    name: str
    title: str
    methods: tuple[str, ...]
    settings: tuple[str, ...]
    metric: str = "MSE"
    lower_is_better: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    domain: str = "regression"  # which registered methods can join it (hsmlbench.methods.registry)


def comparable_config(config: dict) -> dict:
    """A config as ``matches`` compares it: through JSON (tuples become lists), without the
    budget's ``description``, a label for people that is not part of the run (results stored
    under an older wording of it still match)."""
    config = json.loads(json.dumps(config))
    if isinstance(config.get("budget"), dict):
        config["budget"].pop("description", None)
    return config


def config_matches(current: dict, stored: dict) -> bool:
    """Whether a stored config (from a checkpoint or result file) describes the run whose
    config is ``current`` (both as ``dataclasses.asdict``).

    A field added after the file was written matches only while it is left at None (an
    optional feature that is off), so old results survive new options. The budget's
    ``description`` is a label for people and is not compared.
    """
    current, stored = comparable_config(current), comparable_config(stored)
    return all(
        stored[key] == value if key in stored else value is None for key, value in current.items()
    ) and set(stored) <= set(current)
