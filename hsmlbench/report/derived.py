"""What report code computes from a raw record's measurements, never stored in it
(docs/PROTOCOL.md §6): per-family means, mean soft assignments per family or dataset, and
the cluster structure (``statistics.cluster_structure``).

Version-1 raw files stored the assignment means and the cluster structure instead of the
per-task assignments; for those the stored values are read as they are (they cannot be
recomputed); ``raw["legacy"]`` marks such records and the cluster notes say so.
"""

from __future__ import annotations

import numpy as np

from hsmlbench.domains.regression.tasks import FAMILIES
from hsmlbench.report.statistics import cluster_structure
from hsmlbench.results.schema import decode_array


def family_means(raw: dict) -> dict[str, float]:
    """A regression record's mean test error per task family present."""
    per_task, family = np.asarray(raw["per_task"], float), np.asarray(raw["task_family"])
    return {
        f: float(per_task[family == i].mean())
        for i, f in enumerate(FAMILIES)
        if (family == i).any()
    }


def assignments(cell: dict) -> dict[str, np.ndarray]:
    """Per-task soft assignments of a record (regression) or a dataset cell (images): level →
    [tasks, clusters]; empty for methods without a tree and for version-1 files."""
    return {
        level: decode_array(stored) for level, stored in (cell.get("assignments") or {}).items()
    }


def mean_assignments_by_family(raw: dict) -> dict[str, dict[str, list[float]]]:
    """level → family → the mean soft assignment of that family's test tasks."""
    per_task = assignments(raw)
    if not per_task:
        return raw.get("mean_assignments_by_family") or {}
    family = np.asarray(raw["task_family"])
    return {
        level: {
            f: values[family == i].mean(axis=0).tolist()
            for i, f in enumerate(FAMILIES)
            if (family == i).any()
        }
        for level, values in per_task.items()
    }


def mean_assignments_of_cell(cell: dict) -> dict[str, list[float]]:
    """An image dataset cell's mean soft assignment per level."""
    per_task = assignments(cell)
    if not per_task:
        return cell.get("mean_assignments") or {}
    return {level: values.mean(axis=0).tolist() for level, values in per_task.items()}


def cluster_structure_of(raw: dict) -> dict | None:
    """How well a regression record's level-1 clusters separate the families (None: no tree)."""
    per_task = assignments(raw)
    if "level1" not in per_task:
        return raw.get("cluster_structure")
    return cluster_structure(per_task["level1"], np.asarray(raw["task_family"]), FAMILIES)
