"""Evaluation per dataset on fixed test tasks (docs/PROTOCOL.md §4 "Episodes", §5).

For each dataset: ``n_test_tasks`` tasks from its test split, K support + K query images per
class, drawn from ``config.eval_seed`` and the dataset's name only, so every method and seed
sees the same tasks. The query accuracy is recorded before adaptation and after each of the
10 test-time steps; the headline number is the accuracy after the last step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hsmlbench.domains.images.configs import ImageRunConfig
from hsmlbench.domains.images.episodes import EvaluationTasks
from hsmlbench.domains.images.layout import ImageSplit
from hsmlbench.domains.images.models import ImageMetaLearner


@dataclass
class ImageEvalResult:
    curve: np.ndarray  # [n_tasks, steps + 1] query accuracy (%)
    assignments: dict[str, np.ndarray] = field(default_factory=dict)  # HSML's level-1/2, per task

    @property
    def headline(self) -> np.ndarray:
        return self.curve[:, -1]


def evaluation_tasks(config: ImageRunConfig, split: ImageSplit) -> EvaluationTasks:
    return EvaluationTasks(
        split,
        config.budget.n_test_tasks,
        config.n_way,
        config.k_shot,
        config.query_test,
        config.eval_seed,
    )


def evaluate_image_model(
    model: ImageMetaLearner,
    config: ImageRunConfig,
    test_splits: dict[str, ImageSplit],
    device: torch.device | str = "cpu",
) -> dict[str, ImageEvalResult]:
    """Accuracy curves per dataset name, on each dataset's fixed test tasks."""
    model.eval()
    results = {}
    for name, split in test_splits.items():
        curves, assignments = [], {}
        for chunk in evaluation_tasks(config, split).chunks(config.eval_chunk):
            curve, ctx = model.query_curve(chunk.to(device), config.inner_steps_test)
            curves.append(curve.detach().cpu().numpy())
            for key, value in ctx.assignments.items():
                assignments.setdefault(key, []).append(value.detach().cpu().numpy())
        curve = np.concatenate(curves)
        if not np.isfinite(curve).all():
            raise FloatingPointError(f"{config.job_name}: non-finite accuracy on {name}")
        results[name] = ImageEvalResult(
            curve, {k: np.concatenate(v) for k, v in assignments.items()}
        )
    return results
