"""The regression domain (T1, T2): tasks from four function families, an MLP, query MSE.

Training tasks come from one generator seeded by the run's seed (its state is checkpointed);
the fixed test tasks from ``config.eval_seed`` only, so every method and seed sees the same
tasks (docs/PROTOCOL.md §3 "Evaluation", §5).
"""

from __future__ import annotations

import numpy as np
import torch

from hsmlbench.domains.base import Domain, EvalResult, EvaluationCell, TrainingStream
from hsmlbench.domains.regression.configs import BUDGETS, TABLES, RunConfig, run_config
from hsmlbench.domains.regression.tasks import FAMILIES, TaskBatch, active_families, sample_tasks
from hsmlbench.results.schema import encode_array
from hsmlbench.seeding import task_generator

FIT_GRID = np.linspace(-5.0, 5.0, 101)  # x of the adapted fits drawn in the figures
# Test steps whose per-task errors a raw file keeps besides the headline (the last step): the
# ablations score a method after one step, paired on the same tasks.
STEPS_KEPT = (0, 1, 2)


def training_seed(seed: int) -> int:
    """Training tasks use a stream distinct from the evaluation seed."""
    return 1_000_003 * (seed + 1)


class RegressionStream(TrainingStream):
    """Meta-batches drawn one after another from one generator (T2: the families open at
    each iteration)."""

    def __init__(self, config: RunConfig, seed: int) -> None:
        self.config = config
        self.generator = task_generator(training_seed(seed))

    def batches(self, start: int, stop: int):
        c = self.config
        for iteration in range(start, stop):
            families = active_families(iteration) if c.continual is not None else FAMILIES
            yield (
                iteration,
                sample_tasks(
                    c.meta_batch, c.k_shot, c.n_query, self.generator, families, c.quadratic_form
                ),
            )

    def state(self):
        return self.generator.get_state()

    def restore(self, state) -> None:
        self.generator.set_state(state)


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


def adapted_predictions(model, tasks: TaskBatch, steps: int, x_grid: torch.Tensor) -> np.ndarray:
    """Predictions on ``x_grid`` [G] after ``steps`` inner steps, per task: [T, G] (figures)."""
    *_, (params, ctx) = model.evaluation_steps(tasks, steps)
    grid = x_grid.view(1, -1, 1).expand(tasks.n_tasks, -1, 1).to(tasks.x_support)
    with torch.no_grad():
        return model.predict(params, grid, ctx)[..., 0].cpu().numpy()


def _fit_examples(model, config: RunConfig, tasks: TaskBatch) -> dict:
    """For the first test task of each family: support points and adapted predictions."""
    examples = {}
    for index, family in enumerate(FAMILIES):
        task_ids = (tasks.family == index).nonzero().flatten()
        if len(task_ids) == 0:
            continue
        i = int(task_ids[0])
        one = tasks.slice(i, i + 1)
        prediction = adapted_predictions(
            model, one, config.inner_steps_test, torch.tensor(FIT_GRID, dtype=torch.float32)
        )
        examples[family] = {
            "task_index": i,
            "x_support": one.x_support.flatten().tolist(),
            "y_support": one.y_support.flatten().tolist(),
            "prediction": np.round(prediction[0], 5).tolist(),
        }
    return examples


def dead_units(model) -> list[float] | None:
    """Per hidden layer, the fraction of θ0's ReLU units that output 0 for every x in
    [-5, 5] (``FIT_GRID``): a unit dead on the whole input range cannot help any task until the
    inner loop revives it. Only for a shared MLP initialization (MAML); None otherwise."""
    theta0 = getattr(model, "theta0", None)
    if not isinstance(theta0, torch.nn.ParameterList):
        return None
    h = torch.tensor(FIT_GRID, dtype=theta0[0].dtype).view(-1, 1)
    fractions = []
    with torch.no_grad():
        for w, b in zip(theta0[0:-2:2], theta0[1:-2:2]):
            h = torch.relu(h @ w + b)
            fractions.append(float((h.amax(dim=0) <= 0).float().mean()))
    return fractions


def _windows(values: list[float], window: int) -> list[list[float]]:
    """[end iteration, mean post-adaptation query loss] per window (HSML-D's signal)."""
    return [
        [min(i + window, len(values)), float(np.mean(values[i : i + window]))]
        for i in range(0, len(values), window)
    ]


def downsample(values: list[float], points: int = 700) -> list[list[float]]:
    """[iteration, mean over its window] pairs, for loss curves in figures."""
    if not values:
        return []
    window = max(1, len(values) // points)
    return [
        [i + window, float(np.mean(values[i : i + window]))] for i in range(0, len(values), window)
    ]


class RegressionDomain(Domain):
    name = "regression"
    tables = TABLES

    def budgets(self, table: str):
        return BUDGETS

    def run_config(self, table: str, method: str, setting: str, budget: str) -> RunConfig:
        return run_config(table, method, setting, budget)

    def build_model(self, config: RunConfig):
        from hsmlbench.methods.builtin import build_model

        return build_model(config)

    def training_stream(self, config, seed, data_root=None, device=None) -> RegressionStream:
        return RegressionStream(config, seed)

    def evaluation_cells(self, config, data_root=None) -> list[EvaluationCell]:
        tasks = evaluation_tasks(config)

        def chunks(size: int):
            for start in range(0, tasks.n_tasks, size):
                yield tasks.slice(start, start + size)

        cell = EvaluationCell("", "", chunks, tasks.family.numpy())
        cell.tasks = tasks  # the fits in the figures adapt to some of them
        return [cell]

    def job_fields(self, config, trained, results: dict[str, EvalResult]) -> dict:
        """Measurements only: per-task errors (headline and ``STEPS_KEPT``), each task's family
        and soft cluster assignments, the adapted fits drawn in the figures, the training
        curves. Means, intervals and cluster statistics are report code's (docs/PROTOCOL.md
        §6)."""
        (result,) = results.values()
        return {
            "per_task": result.headline.tolist(),
            "per_task_by_step": {str(s): result.curve[:, s].tolist() for s in STEPS_KEPT},
            "per_step_mean": result.curve.mean(axis=0).tolist(),
            "task_family": result.groups.tolist(),
            "assignments": {name: encode_array(v) for name, v in result.assignments.items()},
            "fits": _fit_examples(trained.model, config, evaluation_tasks(config)),
            "theta0_dead_units": dead_units(trained.model),
            "train_query_loss": downsample(trained.query_metric),
            "window_query_loss": _windows(
                trained.query_metric, config.continual.window if config.continual else 1000
            ),
        }

    def table_rows(self, raw: dict) -> list[dict]:
        keys = ("method", "setting", "seed", "per_task")
        return [
            {k: raw[k] for k in keys}
            | {"wall_time_s": raw["wall_time_s"], "per_step_mean": raw["per_step_mean"]}
            | {"meta_step": raw["meta_step"]}
            | ({"events": raw["events"]} if raw.get("events") else {})
        ]
