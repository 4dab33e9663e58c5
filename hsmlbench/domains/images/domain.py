"""The image domain (T3, T4): 5-way K-shot episodes from four datasets, conv learners, accuracy.

One job trains one model on all four datasets and is evaluated on each dataset's fixed test
tasks, so a job has four headline cells (docs/PROTOCOL.md §4). Training episodes are drawn
by iteration (``episode_generator``), ahead of time by a background thread; the device is
CUDA when there is one. Without the real data a job does not fail: the pipeline writes a
"not run" record naming the missing dataset and how to get it.
"""

from __future__ import annotations

import torch

from hsmlbench.domains.base import Domain, EvalResult, EvaluationCell, TrainingStream
from hsmlbench.domains.images.configs import (
    IMAGE_BUDGETS,
    IMAGE_TABLES,
    ImageRunConfig,
    base_table,
    image_run_config,
)
from hsmlbench.domains.images.continual import active_datasets
from hsmlbench.domains.images.datasets import SPLITS, DataError, how_to_get, resolve_data_root
from hsmlbench.domains.images.episodes import (
    BackgroundLoader,
    EpisodeSampler,
    EvaluationTasks,
    episode_generator,
)
from hsmlbench.domains.images.layout import ImageSplit, check_dataset, load_split
from hsmlbench.domains.images.synthetic import synthetic_split
from hsmlbench.domains.regression.domain import downsample, training_seed
from hsmlbench.results.schema import encode_array


def load_splits(config: ImageRunConfig, split: str, data_root=None) -> dict[str, ImageSplit]:
    """One split of every dataset of ``config``: decoded from disk, or drawn (synthetic)."""
    if split not in SPLITS:
        raise KeyError(split)
    if config.data == "synthetic":
        return {
            d: synthetic_split(
                d,
                split,
                config.image_size,
                config.synthetic_images_per_class,
                config.synthetic_seed,
            )
            for d in config.datasets
        }
    root = resolve_data_root(data_root)
    return {d: load_split(root, d, split, config.image_size) for d in config.datasets}


class ImageStream(TrainingStream):
    """Episodes built by iteration in a background thread (``BackgroundLoader``): nothing to
    checkpoint, the iteration alone fixes the batch."""

    def __init__(self, config: ImageRunConfig, seed: int, splits: list[ImageSplit], device):
        self.config, self.splits, self.device = config, splits, torch.device(device)
        self.sampler = EpisodeSampler(splits, config.n_way, config.k_shot, config.n_query_train)
        self.base_seed = training_seed(seed)
        self.loader: BackgroundLoader | None = None

    def _make(self, iteration: int):
        c = self.config
        total = c.budget.iterations
        active = active_datasets(c.continual, len(self.splits), iteration, total)
        return self.sampler.batch(
            c.meta_batch, episode_generator(self.base_seed, iteration), active
        )

    def batches(self, start: int, stop: int):
        self.loader = BackgroundLoader(
            self._make, start, stop, pin_memory=self.device.type == "cuda"
        )
        for iteration, batch in self.loader:
            yield iteration, batch.to(self.device)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()


class ImageDomain(Domain):
    name = "images"
    tables = IMAGE_TABLES

    def budgets(self, table: str):
        return IMAGE_BUDGETS[base_table(table)]

    def run_config(self, table, method, setting, budget) -> ImageRunConfig:
        return image_run_config(table, method, setting, budget)

    def build_model(self, config):
        from hsmlbench.domains.images.models import build_image_model

        return build_image_model(config)

    def device(self, requested=None) -> torch.device:
        if requested is not None:
            return torch.device(requested)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def data_problems(self, config, data_root=None) -> dict[str, str]:
        """Dataset → why it cannot be used (``data check``'s header-level check); empty when
        every dataset is ready (always, for synthetic data)."""
        if config.data == "synthetic":
            return {}
        try:
            root = resolve_data_root(data_root)
        except DataError as error:
            return {name: str(error) for name in config.datasets}
        problems = {}
        for name in config.datasets:
            report = check_dataset(root, name)
            if not report.ok:
                problems[name] = (
                    f"dataset not found at {report.path}"
                    if not report.found
                    else f"{report.problems[0]} (fix: {report.fix})"
                )
        return problems

    def not_run_fields(self, config, problems: dict[str, str], data_root=None) -> dict:
        """What a "not run" record says: the missing datasets and how to get each."""
        missing = ", ".join(config.dataset_label(n) for n in problems)
        return {
            "reason": f"{missing}: " + "; ".join(dict.fromkeys(problems.values())),
            "dataset_problems": problems,
            "how_to_get": {n: how_to_get(n, data_root or "$HSMLBENCH_DATA") for n in problems},
        }

    def training_stream(self, config, seed, data_root=None, device="cpu") -> ImageStream:
        splits = list(load_splits(config, "train", data_root).values())
        return ImageStream(config, seed, splits, device)

    def meta_step(self, model, batch, config) -> tuple[float, torch.Tensor]:
        """Forward and backward of one meta-batch, ``task_chunk`` tasks at a time (memory):
        batch norm is per task, so each chunk's share of the loss gives the same gradient."""
        n = batch.n_tasks
        size = n if config.task_chunk is None else max(1, config.task_chunk)
        total, accuracies = 0.0, []
        for start in range(0, n, size):
            chunk = batch.slice(start, min(start + size, n))
            loss, _, accuracy = model.meta_loss_and_accuracy(chunk, config.inner_steps_train)
            (loss * (chunk.n_tasks / n)).backward()
            total += loss.item() * chunk.n_tasks / n
            accuracies.append(accuracy.detach())
        return total, torch.cat(accuracies)

    def evaluation_cells(self, config, data_root=None) -> list[EvaluationCell]:
        cells = []
        for name, split in load_splits(config, "test", data_root).items():
            tasks = EvaluationTasks(
                split,
                config.budget.n_test_tasks,
                config.n_way,
                config.k_shot,
                config.query_test,
                config.eval_seed,
            )
            cells.append(EvaluationCell(name, config.dataset_label(name), tasks.chunks))
        return cells

    def job_fields(self, config, trained, results: dict[str, EvalResult]) -> dict:
        """Measurements only, per dataset: per-task accuracies, the mean curve over test steps,
        each task's soft cluster assignments; and the training curve. Means and intervals are
        report code's (docs/PROTOCOL.md §6)."""
        per_dataset = {
            name: {
                "label": config.dataset_label(name),
                "per_task": result.headline.tolist(),
                "per_step_mean": result.curve.mean(axis=0).tolist(),
                "assignments": {k: encode_array(v) for k, v in result.assignments.items()},
            }
            for name, result in results.items()
        }
        return {
            "data": config.data,
            "per_dataset": per_dataset,
            "train_query_accuracy": downsample(trained.query_metric),
        }

    def table_rows(self, raw: dict) -> list[dict]:
        return [
            {
                "method": raw["method"],
                "setting": f"{cell['label']} {raw['setting']}",
                "seed": raw["seed"],
                "per_task": cell["per_task"],
                "wall_time_s": raw.get("wall_time_s"),
                "per_step_mean": cell["per_step_mean"],
                "meta_step": raw["meta_step"],
            }
            for cell in raw["per_dataset"].values()
        ]
