"""A reproduction is a grid of independent jobs (table, method, setting, seed).

Each job trains (resuming from its checkpoint if one exists), evaluates on the table's fixed
test tasks, and writes its raw result file atomically. A table is assembled from whatever raw
files exist for it at that budget, so finished jobs are never re-run or lost.
"""

from __future__ import annotations

import json
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hsmlbench.atomic import write_json, write_text
from hsmlbench.configs import BUDGETS, TABLES, run_config
from hsmlbench.evaluation import adapted_predictions, evaluate, evaluation_tasks
from hsmlbench.results import environment_info, render_markdown, summarize
from hsmlbench.tasks import FAMILIES
from hsmlbench.training import CHECKPOINT, train

FIT_GRID = np.linspace(-5.0, 5.0, 101)


@dataclass(frozen=True)
class Job:
    table: str
    method: str
    setting: str
    seed: int
    budget: str

    @property
    def name(self) -> str:
        return f"{self.table}-{self.method}-{self.setting}-seed{self.seed}"

    @property
    def config(self):
        return run_config(self.table, self.method, self.setting, self.budget)


def plan(
    tables: list[str],
    methods: list[str] | None,
    seeds: int,
    budget: str,
    settings: list[str] | None = None,
) -> list[Job]:
    """The grid of jobs; raises KeyError naming the first unknown table, method or budget."""
    if budget not in BUDGETS:
        raise KeyError(f"unknown budget {budget!r}; known: {', '.join(BUDGETS)}")
    jobs = []
    for table in tables:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        spec = TABLES[table]
        for method in methods or spec.methods:
            if method not in spec.methods:
                raise KeyError(
                    f"table {table} has no method {method!r}; it has: {', '.join(spec.methods)}"
                )
            for setting in settings or spec.settings:
                if setting not in spec.settings:
                    raise KeyError(
                        f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
                    )
                jobs += [Job(table, method, setting, seed, budget) for seed in range(seeds)]
    return jobs


def raw_path(out_dir: Path, job: Job) -> Path:
    return Path(out_dir) / "runs" / job.table / f"{job.name}-{job.budget}.json"


def _fit_examples(model, config) -> dict:
    """For the first test task of each family: support points and adapted predictions."""
    tasks = evaluation_tasks(config)
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


def run_job(job: Job, out_dir: Path, work_dir: Path, progress: bool = True) -> dict:
    """Runs one job (or loads its finished result) and returns its raw result."""
    config = job.config
    path = raw_path(out_dir, job)
    if path.exists():
        done = json.loads(path.read_text())
        if config.matches(done.get("config", {})):
            return done
    run_dir = Path(work_dir) / job.budget / job.name
    resume = (run_dir / CHECKPOINT).exists()
    trained = train(config, job.seed, run_dir, resume=resume, progress=progress)
    result = evaluate(trained.model, config)
    per_task = result.headline
    assignments = {
        name: {
            family: np.round(values[result.family == i].mean(axis=0), 5).tolist()
            for i, family in enumerate(FAMILIES)
            if (result.family == i).any()
        }
        for name, values in result.assignments.items()
    }
    raw = {
        "job": job.name,
        "table": job.table,
        "method": job.method,
        "setting": job.setting,
        "seed": job.seed,
        "budget": job.budget,
        "n_tasks": int(per_task.size),
        "mean": float(per_task.mean()),
        "ci95": float(1.96 * per_task.std() / np.sqrt(per_task.size)),
        "per_task": per_task.tolist(),
        "per_step_mean": result.curve.mean(axis=0).tolist(),
        "per_family_mean": {
            family: float(per_task[result.family == i].mean())
            for i, family in enumerate(FAMILIES)
            if (result.family == i).any()
        },
        "task_family": result.family.tolist(),
        "mean_assignments_by_family": assignments,
        "fits": _fit_examples(trained.model, config),
        "iterations": config.budget.iterations,
        "wall_time_s": trained.wall_time_s,
        "train_query_loss": _downsample(trained.query_losses),
        "window_query_loss": _windows(
            trained.query_losses, config.continual.window if config.continual else 1000
        ),
        "events": trained.events,
        "environment": environment_info(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "config": config.to_dict(),
    }
    write_json(path, raw)
    return raw


def _windows(values: list[float], window: int) -> list[list[float]]:
    """[end iteration, mean post-adaptation query loss] per window (HSML-D's signal)."""
    return [
        [min(i + window, len(values)), float(np.mean(values[i : i + window]))]
        for i in range(0, len(values), window)
    ]


def _downsample(values: list[float], points: int = 700) -> list[list[float]]:
    """[iteration, mean over its window] pairs, for loss curves in figures."""
    if not values:
        return []
    window = max(1, len(values) // points)
    return [
        [i + window, float(np.mean(values[i : i + window]))] for i in range(0, len(values), window)
    ]


def assemble_table(table: str, budget: str, out_dir: Path) -> dict:
    """The table's JSON from every raw result of that table and budget under ``out_dir``."""
    spec = TABLES[table]
    raws = sorted(
        (
            json.loads(p.read_text())
            for p in (Path(out_dir) / "runs" / table).glob(f"*-{budget}.json")
        ),
        key=lambda r: (
            spec.methods.index(r["method"]),
            spec.settings.index(r["setting"]),
            r["seed"],
        ),
    )
    if not raws:
        raise FileNotFoundError(f"no finished runs of {table} at budget {budget} under {out_dir}")
    rows = [
        {k: r[k] for k in ("method", "setting", "seed", "n_tasks", "mean", "ci95", "per_task")}
        | {"wall_time_s": r["wall_time_s"], "per_step_mean": r["per_step_mean"]}
        | ({"events": r["events"]} if r.get("events") else {})
        for r in raws
    ]
    b = BUDGETS[budget]
    data = {
        "table": table,
        "title": spec.title,
        "metric": spec.metric,
        "lower_is_better": spec.lower_is_better,
        "budget": {"name": b.name, "iterations": b.iterations, "n_test_tasks": b.n_test_tasks},
        "environment": raws[-1]["environment"],
        "rows": rows,
        "notes": list(spec.notes),
    }
    from hsmlbench.figures import cluster_note, growth_note

    first_seed = [r for r in raws if r["seed"] == raws[0]["seed"]]
    for note in (cluster_note(first_seed, table), growth_note(raws)):
        if note:
            data["notes"].append(note)
    data["summary"] = summarize(data)
    return data


def write_table(table: str, budget: str, out_dir: Path) -> tuple[Path, Path]:
    data = assemble_table(table, budget, out_dir)
    json_path, md_path = Path(out_dir) / f"{table}.json", Path(out_dir) / f"{table}.md"
    write_json(json_path, data)
    write_text(md_path, render_markdown(data))
    return json_path, md_path


def reproduce(
    jobs: list[Job], out_dir: Path, work_dir: Path, progress: bool = True, log=print
) -> list[Path]:
    """Runs every job in order, then writes each table's JSON and markdown."""
    for number, job in enumerate(jobs, 1):
        log(f"[{number}/{len(jobs)}] {job.name} (budget {job.budget})")
        raw = run_job(job, out_dir, work_dir, progress)
        log(
            f"    {job.name}: mean {raw['mean']:.4f} ± {raw['ci95']:.4f} over {raw['n_tasks']} tasks"
        )
    written = []
    for table, budget in dict.fromkeys((j.table, j.budget) for j in jobs):
        written += write_table(table, budget, out_dir)
        try:
            from hsmlbench.figures import write_figures

            written += write_figures(table, budget, out_dir)
        except ImportError:
            pass
    return written
