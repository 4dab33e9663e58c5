"""Evaluation on a fixed set of test tasks (docs/PROTOCOL.md §3 "Evaluation").

Every method sees the same tasks: they come from ``config.eval_seed``, never from the run's
seed. For each task we record the query MSE before adaptation and after each inner step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hsmlbench.domains.regression.configs import RunConfig
from hsmlbench.domains.regression.tasks import FAMILIES, TaskBatch, sample_tasks
from hsmlbench.methods.meta_learner import MetaLearner
from hsmlbench.seeding import task_generator


@dataclass
class EvalResult:
    curve: np.ndarray  # [n_tasks, steps + 1] query MSE; column s = after s inner steps
    family: np.ndarray  # [n_tasks] index into tasks.FAMILIES
    assignments: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. HSML's p, q

    @property
    def headline(self) -> np.ndarray:
        """Per-task query MSE after the last test step (the paper's number)."""
        return self.curve[:, -1]


def evaluation_tasks(config: RunConfig) -> TaskBatch:
    """The fixed test tasks of a table cell: all four families (docs/PROTOCOL.md §3, §5)."""
    return sample_tasks(
        config.budget.n_test_tasks,
        config.k_shot,
        config.n_query,
        task_generator(config.eval_seed),
        FAMILIES,
        config.quadratic_form,
    )


def evaluate(model: MetaLearner, config: RunConfig, tasks: TaskBatch | None = None) -> EvalResult:
    """Query-MSE curves of ``model`` on the fixed test tasks, in chunks of ``eval_chunk``."""
    tasks = evaluation_tasks(config) if tasks is None else tasks
    model.eval()
    curves, assignments = [], {}
    for start in range(0, tasks.n_tasks, config.eval_chunk):
        chunk = tasks.slice(start, start + config.eval_chunk)
        curve, ctx = model.query_curve(chunk, config.inner_steps_test)
        curves.append(curve.detach().cpu().numpy())
        for name, value in ctx.assignments.items():
            assignments.setdefault(name, []).append(value.detach().cpu().numpy())
    curve = np.concatenate(curves)
    if not np.isfinite(curve).all():
        bad = int((~np.isfinite(curve)).any(axis=1).sum())
        raise FloatingPointError(
            f"{config.job_name}: {bad} of {len(curve)} test tasks have a non-finite query MSE; "
            "the trained model diverged (check the training loss curve)"
        )
    return EvalResult(
        curve, tasks.family.numpy(), {k: np.concatenate(v) for k, v in assignments.items()}
    )


def adapted_predictions(
    model: MetaLearner, tasks: TaskBatch, steps: int, x_grid: torch.Tensor
) -> np.ndarray:
    """Predictions on ``x_grid`` [G] after ``steps`` inner steps, per task: [T, G] (figures)."""
    *_, (params, ctx) = model.evaluation_steps(tasks, steps)
    grid = x_grid.view(1, -1, 1).expand(tasks.n_tasks, -1, 1).to(tasks.x_support)
    with torch.no_grad():
        return model.predict(params, grid, ctx)[..., 0].cpu().numpy()
