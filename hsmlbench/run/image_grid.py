"""T3/T4 jobs and tables, in the same shape as ``hsmlbench.run.grid`` (raw JSON, then tables).

A job (table, method, setting, seed, budget) trains one model on all datasets and evaluates
it per dataset; its raw file ``runs/<table>/<job>-<budget>.json`` keeps every per-task accuracy.
A table's rows are (method, "<Dataset> <K>-shot", seed), so ``hsmlbench.report.tables`` renders them
(published vs ours with CIs, paired tests of the claims) like any other table.

Without the real data a job does not fail: it writes a "not run" record that names the
missing dataset and how to get it, and the table says so for each cell.
"""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import numpy as np

from hsmlbench.atomic import write_json, write_text
from hsmlbench.domains.images.configs import (
    IMAGE_BUDGETS,
    IMAGE_TABLES,
    ImageRunConfig,
    base_table,
    image_run_config,
)
from hsmlbench.domains.images.datasets import SPLITS, DataError, how_to_get, resolve_data_root
from hsmlbench.domains.images.layout import ImageSplit, check_dataset, load_split
from hsmlbench.domains.images.synthetic import synthetic_split
from hsmlbench.report.tables import environment_info, render_markdown, summarize
from hsmlbench.run.image_evaluation import evaluate_image_model
from hsmlbench.run.image_training import default_device, train_image_model


def raw_path(out_dir: Path, job) -> Path:
    return Path(out_dir) / "runs" / job.table / f"{job.name}-{job.budget}.json"


def load_splits(
    config: ImageRunConfig, split: str, data_root: Path | None
) -> dict[str, ImageSplit]:
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
    return {d: load_split(data_root, d, split, config.image_size) for d in config.datasets}


def data_problems(config: ImageRunConfig, data_root) -> dict[str, str]:
    """Dataset → why it cannot be used; empty when every dataset is ready (always, synthetic).

    ``data check``'s header-level check (sizes and counts, every file opened).
    """
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


def _downsample(values: list[float], points: int = 700) -> list[list[float]]:
    if not values:
        return []
    window = max(1, len(values) // points)
    return [
        [i + window, float(np.mean(values[i : i + window]))] for i in range(0, len(values), window)
    ]


def run_image_job(
    job, out_dir: Path, work_dir: Path, progress: bool = True, data_root=None, device=None
) -> dict:
    """Runs one job (or loads its finished result) and returns its raw result."""
    config = image_run_config(job.table, job.method, job.setting, job.budget)
    path = raw_path(out_dir, job)
    if path.exists():
        done = json.loads(path.read_text())
        if done.get("status") == "done" and config.matches(done.get("config", {})):
            return done
    record = {
        "job": job.name,
        "table": job.table,
        "method": job.method,
        "setting": job.setting,
        "seed": job.seed,
        "budget": job.budget,
        "data": config.data,
        "config": config.to_dict(),
        "environment": environment_info(),
    }
    problems = data_problems(config, data_root)
    if problems:
        missing = ", ".join(config.dataset_label(n) for n in problems)
        record.update(
            status="not run",
            reason=f"{missing}: " + "; ".join(dict.fromkeys(problems.values())),
            dataset_problems=problems,
            how_to_get={n: how_to_get(n, data_root or "$HSMLBENCH_DATA") for n in problems},
            mean=math.nan,
            ci95=math.nan,
            n_tasks=0,
        )
        write_json(path, record)
        return record
    root = None if config.data == "synthetic" else resolve_data_root(data_root)
    device = device or default_device()
    train_splits = load_splits(config, "train", root)
    run_dir = Path(work_dir) / job.budget / job.name
    from hsmlbench.run.training import CHECKPOINT

    trained = train_image_model(
        config,
        job.seed,
        list(train_splits.values()),
        run_dir,
        resume=(run_dir / CHECKPOINT).exists(),
        progress=progress,
        device=device,
    )
    results = evaluate_image_model(trained.model, config, load_splits(config, "test", root), device)
    per_dataset = {}
    for name, result in results.items():
        per_task = result.headline
        per_dataset[name] = {
            "label": config.dataset_label(name),
            "n_tasks": int(per_task.size),
            "mean": float(per_task.mean()),
            "ci95": float(1.96 * per_task.std() / np.sqrt(per_task.size)),
            "per_task": np.round(per_task, 4).tolist(),
            "per_step_mean": result.curve.mean(axis=0).tolist(),
            "mean_assignments": {
                k: np.round(v.mean(axis=0), 5).tolist() for k, v in result.assignments.items()
            },
        }
    means = [v["mean"] for v in per_dataset.values()]
    record.update(
        status="done",
        per_dataset=per_dataset,
        mean=float(np.mean(means)),
        ci95=math.nan,
        n_tasks=sum(v["n_tasks"] for v in per_dataset.values()),
        iterations=config.budget.iterations,
        wall_time_s=trained.wall_time_s,
        train_query_accuracy=_downsample(trained.query_accuracies),
        events=trained.events,
        meta_step="autograd",  # the conv learner keeps the double-backward meta-step
        environment=environment_info(str(device)),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_gpu_mb=trained.peak_gpu_mb,
    )
    write_json(path, record)
    return record


def assemble_image_table(table: str, budget: str, out_dir: Path) -> dict:
    """The table's JSON from every raw result of ``table`` at ``budget``, in results' format."""
    spec = IMAGE_TABLES[table]
    files = sorted((Path(out_dir) / "runs" / table).glob(f"*-{budget}.json"))
    raws = [json.loads(p.read_text()) for p in files]
    raws = [
        r for r in raws if r.get("method") in spec.methods and r.get("setting") in spec.settings
    ]
    if not raws:
        raise FileNotFoundError(f"no runs of {table} at budget {budget} under {out_dir}")
    raws.sort(
        key=lambda r: (
            spec.methods.index(r["method"]),
            spec.settings.index(r["setting"]),
            r["seed"],
        )
    )
    rows, notes, not_run, how = [], list(spec.notes), [], {}
    for r in raws:
        if r.get("status") != "done":
            config = image_run_config(table, r["method"], r["setting"], budget)
            problems = r.get("dataset_problems", {})
            missing = ", ".join(config.dataset_label(n) for n in problems)
            for name in config.datasets:
                why = problems.get(name) or (
                    f"this dataset is ready, but the model trains on all four and {missing} cannot be used"
                )
                not_run.append(
                    f"- {r['method']} seed {r['seed']}, {config.dataset_label(name)} {r['setting']}: not run: {why}"
                )
            how.update(
                {config.dataset_label(n): text for n, text in r.get("how_to_get", {}).items()}
            )
            continue
        for cell in r["per_dataset"].values():
            rows.append(
                {
                    "method": r["method"],
                    "setting": f"{cell['label']} {r['setting']}",
                    "seed": r["seed"],
                    "n_tasks": cell["n_tasks"],
                    "mean": cell["mean"],
                    "ci95": cell["ci95"],
                    "per_task": cell["per_task"],
                    "wall_time_s": r.get("wall_time_s"),
                    "per_step_mean": cell["per_step_mean"],
                    "meta_step": r.get("meta_step", "autograd"),
                }
            )
    if not_run:
        notes.append("Cells without a result:\n\n" + "\n".join(not_run))
    if how:
        notes.append(
            "To get the data (then `hsmlbench data check`):\n\n"
            + "\n".join(f"- {label}: {text}" for label, text in how.items())
        )
    b = IMAGE_BUDGETS[base_table(table)][budget]
    data = {
        "table": table,
        "title": spec.title,
        "metric": spec.metric,
        "lower_is_better": spec.lower_is_better,
        "data": raws[0]["data"],
        "budget": {"name": b.name, "iterations": b.iterations, "n_test_tasks": b.n_test_tasks},
        "environment": raws[-1]["environment"],
        "rows": rows,
        "notes": notes,
    }
    from hsmlbench.report.image_figures import cluster_note

    note = cluster_note(
        [r for r in raws if r.get("status") == "done" and r["seed"] == raws[0]["seed"]], table
    )
    if note:
        data["notes"].append(note)
    data["summary"] = summarize(data)
    return data


def write_image_table(table: str, budget: str, out_dir: Path) -> tuple[Path, Path]:
    data = assemble_image_table(table, budget, out_dir)
    json_path, md_path = Path(out_dir) / f"{table}.json", Path(out_dir) / f"{table}.md"
    write_json(json_path, data)
    write_text(md_path, render_markdown(data))
    return json_path, md_path


def reproduce_images(
    jobs, out_dir: Path, work_dir: Path, progress: bool = True, data_root=None, log=print
) -> list[Path]:
    """Runs every image job in order, then writes each table's JSON, markdown and figures."""
    from hsmlbench.report.image_figures import write_image_figures

    for number, job in enumerate(jobs, 1):
        log(f"[{number}/{len(jobs)}] {job.name} (budget {job.budget})")
        raw = run_image_job(job, out_dir, work_dir, progress, data_root)
        if raw["status"] == "done":
            cells = ", ".join(
                f"{v['label']} {v['mean']:.2f} ± {v['ci95']:.2f}"
                for v in raw["per_dataset"].values()
            )
            log(f"    {job.name}: {cells}")
        else:
            log(f"    {job.name}: not run: {raw['reason']}")
    written = []
    for table, budget in dict.fromkeys((j.table, j.budget) for j in jobs):
        written += write_image_table(table, budget, out_dir)
        written += write_image_figures(table, budget, out_dir)
    return written
