"""HSML's cluster interpretation for images: mean soft assignment per dataset.

``figures/<table>_clusters.png``: for each HSML row of the table, the mean level-1 and level-2
assignment of each dataset's test tasks, from the raw result files only. ``T3_clusters.png``
comes from real runs when there are any; otherwise from the synthetic run, titled as synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsmlbench.domains.images.configs import IMAGE_TABLES, is_synthetic
from hsmlbench.report.derived import mean_assignments_of_cell
from hsmlbench.report.paper_reference import METHOD_LABELS
from hsmlbench.report.plotting import assignment_heatmap, save_png
from hsmlbench.results.schema import DONE
from hsmlbench.results.store import raw_files


def _done_hsml_raws(out_dir: Path, table: str, budget: str) -> list[dict]:
    raws = [
        r
        for r in raw_files(out_dir, table, budget)
        if r["status"] == DONE and mean_assignments_of_cells(r)
    ]
    if not raws:
        return []
    seed = min(r["seed"] for r in raws)
    methods = IMAGE_TABLES[table].methods
    order = [*methods, *sorted({r["method"] for r in raws} - set(methods))]
    return sorted((r for r in raws if r["seed"] == seed), key=lambda r: order.index(r["method"]))


def mean_assignments_of_cells(raw: dict) -> list[dict[str, list[float]]]:
    """Each dataset cell's mean assignment per level (empty for a method without a tree)."""
    means = [mean_assignments_of_cell(cell) for cell in raw.get("per_dataset", {}).values()]
    return means if all(means) else []


def plot_image_clusters(
    raws: list[dict], table: str, budget: str, path: Path, synthetic: bool
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(raws), 2, figsize=(12, 3.2 * len(raws)), squeeze=False, constrained_layout=True
    )
    for row, raw in enumerate(raws):
        labels = [cell["label"] for cell in raw["per_dataset"].values()]
        means = mean_assignments_of_cells(raw)
        for col, level in enumerate(("level1", "level2")):
            matrix = np.array([cell[level] for cell in means])
            assignment_heatmap(
                fig,
                axes[row, col],
                matrix,
                labels,
                f"{METHOD_LABELS.get(raw['method'], raw['method'])}: {level} assignment",
            )
    what = "SYNTHETIC four-domain data (not the paper's datasets)" if synthetic else "real datasets"
    fig.suptitle(f"{table}: mean soft cluster assignment per dataset, {what}, budget {budget}")
    save_png(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_image_figures(table: str, budget: str, out_dir: Path) -> list[Path]:
    """``<table>_clusters.png``; for T3-synthetic also ``T3_clusters.png`` while no real T3 run exists."""
    raws = _done_hsml_raws(out_dir, table, budget)
    if not raws:
        return []
    folder = Path(out_dir) / "figures"
    synthetic = is_synthetic(table)
    written = [
        plot_image_clusters(raws, table, budget, folder / f"{table}_clusters.png", synthetic)
    ]
    if table == "T3-synthetic" and not _done_hsml_raws(out_dir, "T3", budget):
        written.append(plot_image_clusters(raws, table, budget, folder / "T3_clusters.png", True))
    return written


def cluster_note(raws: list[dict], table: str) -> str | None:
    """A sentence for the markdown: each dataset's most used level-1 cluster, from data."""
    parts = []
    for raw in raws:
        cells = raw.get("per_dataset", {})
        level1 = {c["label"]: mean_assignments_of_cell(c).get("level1") for c in cells.values()}
        if not level1 or any(v is None for v in level1.values()):
            continue
        described = ", ".join(
            f"{label} → cluster {int(np.argmax(v)) + 1} ({max(v):.2f})"
            for label, v in level1.items()
        )
        k = len(next(iter(level1.values())))
        parts.append(
            f"{METHOD_LABELS.get(raw['method'], raw['method'])} ({k} clusters): {described}"
        )
    if not parts:
        return None
    return (
        f"Cluster interpretation (`figures/{table}_clusters.png`): HSML's mean level-1 soft "
        "assignment per dataset over its test tasks; each dataset's most used cluster and its mean "
        "weight: " + "; ".join(parts) + ". A weight near 1 means the dataset has a cluster of its "
        "own; near 1/K means the tree does not separate it."
    )
