"""What a domain tells the one pipeline (``hsmlbench.run``): a task, its model, its metric.

Training (``hsmlbench.run.training``), evaluation (``hsmlbench.run.evaluation``), one job
(``hsmlbench.run.single_job``), the grid and its executors, checkpoints, reports and the CLI
are written once and take a ``Domain``. A domain answers only what differs between regression
and images: how a meta-batch and the fixed test tasks are drawn, the model for a config,
whether its data is there, and what its jobs measure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from hsmlbench.configs import Budget, TableSpec


class TrainingStream:
    """The meta-batches of one training run, iteration by iteration.

    ``state()`` is saved in each checkpoint and ``restore`` puts it back, so a resumed run
    draws exactly the batches an uninterrupted one would have drawn."""

    def batches(self, start: int, stop: int) -> Iterator[tuple[int, object]]:
        raise NotImplementedError

    def state(self) -> object:
        return None

    def restore(self, state: object) -> None:
        """Puts back what ``state()`` returned (nothing for a stream drawn by iteration)."""

    def close(self) -> None:
        """Stops background work (an episode loader's thread)."""


@dataclass
class EvaluationCell:
    """One headline cell's fixed test tasks: ``chunks(size)`` yields task batches in order;
    ``groups`` (optional) labels each task (regression: its family index)."""

    name: str  # "" for a domain whose job is one cell; else e.g. the dataset name
    label: str  # how tables name it ("Bird", or "" for the job's own setting)
    chunks: object  # callable: chunks(size) → iterator of task batches
    groups: np.ndarray | None = None


@dataclass
class EvalResult:
    """Per-task metric curves of one cell: column s is the query metric after s inner steps."""

    curve: np.ndarray  # [n_tasks, steps + 1]
    groups: np.ndarray | None = None  # e.g. regression's task family index, per task
    assignments: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. HSML's p, q

    @property
    def headline(self) -> np.ndarray:
        """Per-task metric after the last test step (the paper's number)."""
        return self.curve[:, -1]


class Domain:
    """The questions the pipeline asks a domain. Subclasses: ``RegressionDomain``,
    ``ImageDomain``; ``hsmlbench.domains.domain_for`` maps each table to one."""

    name: str = ""
    tables: dict[str, TableSpec] = {}

    def budgets(self, table: str) -> dict[str, Budget]:
        raise NotImplementedError

    def run_config(self, table: str, method: str, setting: str, budget: str):
        raise NotImplementedError

    def build_model(self, config) -> torch.nn.Module:
        raise NotImplementedError

    def device(self, requested=None) -> torch.device:
        """Where a job computes: ``requested`` if given, else the domain's default."""
        return torch.device(requested or "cpu")

    def data_problems(self, config, data_root=None) -> dict[str, str]:
        """Dataset → why it cannot be used (empty: the job can run)."""
        return {}

    def training_stream(self, config, seed: int, data_root, device) -> TrainingStream:
        raise NotImplementedError

    def meta_step(self, model, batch, config) -> tuple[float, torch.Tensor]:
        """Forward and backward of one meta-batch (gradients accumulate into ``.grad``);
        returns the meta-loss and the per-task post-adaptation query metric (no gradient)."""
        loss, query = model.meta_loss(batch, config.inner_steps_train)
        loss.backward()
        return loss.item(), query.detach()

    def evaluation_cells(self, config, data_root=None) -> list[EvaluationCell]:
        raise NotImplementedError

    def job_fields(self, config, trained, results: dict[str, EvalResult]) -> dict:
        """The domain's own measurements in a finished job's raw record (the job runner adds
        timings and events, ``hsmlbench.results.record.job_record`` the identity and
        provenance). Nothing derived: report code computes means and intervals."""
        raise NotImplementedError

    def table_rows(self, raw: dict) -> list[dict]:
        """A finished raw record → its table rows (method, setting, seed, per_task,
        per_step_mean, timings); report code adds the statistics."""
        raise NotImplementedError
