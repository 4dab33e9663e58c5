"""The poster's qualitative figures, drawn from the raw result files only (never from models).

- ``T1_fits.png``: for the first test task of each family, the true curve, the support points
  and each method's prediction after the test-time inner steps.
- ``T1_clusters.png``: HSML's mean level-1 and level-2 assignment per task family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hsmlbench.domains.regression.configs import BUDGETS, TABLES, run_config
from hsmlbench.domains.regression.domain import evaluation_tasks
from hsmlbench.domains.regression.tasks import FAMILIES, evaluate_family
from hsmlbench.report.derived import (
    cluster_structure_of,
    family_means,
    mean_assignments_by_family,
)
from hsmlbench.report.paper_reference import METHOD_LABELS
from hsmlbench.report.plotting import assignment_heatmap, save_png
from hsmlbench.results.schema import DONE
from hsmlbench.results.store import raw_files

COLOURS = {"maml": "tab:blue", "mumomaml": "tab:orange", "hsml": "tab:green"}


def _raws(out_dir: Path, table: str, budget: str, seed: int = 0) -> list[dict]:
    """The finished records of one seed, read by the one validating reader."""
    return [
        r for r in raw_files(out_dir, table, budget) if r["seed"] == seed and r["status"] == DONE
    ]


def plot_fits(raws: list[dict], table: str, budget: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in TABLES[table].settings if any(r["setting"] == s for r in raws)]
    if not settings:
        return None
    fig, axes = plt.subplots(
        len(settings), len(FAMILIES), figsize=(16, 3.6 * len(settings)), squeeze=False
    )
    for row, setting in enumerate(settings):
        tasks = evaluation_tasks(run_config(table, "maml", setting, budget))
        for col, family in enumerate(FAMILIES):
            ax = axes[row, col]
            examples = [r for r in raws if r["setting"] == setting and family in r.get("fits", {})]
            if not examples:
                ax.set_axis_off()
                continue
            example = examples[0]["fits"][family]
            grid = np.linspace(-5, 5, len(example["prediction"]))
            i = example["task_index"]
            truth = evaluate_family(
                tasks.family[i : i + 1],
                tasks.params[i : i + 1].double(),
                torch.tensor(grid).view(1, -1, 1),
                tasks.quadratic_form,
            )[0, :, 0].numpy()
            ax.plot(grid, truth, color="black", lw=2, label="true function")
            for raw in examples:
                fit = raw["fits"][family]
                ax.plot(
                    grid,
                    fit["prediction"],
                    color=COLOURS.get(raw["method"]),
                    lw=1.5,
                    ls="--",
                    label=METHOD_LABELS.get(raw["method"], raw["method"]),
                )
            ax.scatter(
                example["x_support"],
                example["y_support"],
                color="red",
                zorder=5,
                s=25,
                label="support points",
            )
            ax.set_title(f"{family}, {setting}")
            ax.set_xlim(-5, 5)
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{table}: adapted predictions on one test task per family (budget {budget})")
    path = save_png(fig, path)
    plt.close(fig)
    return path


def plot_clusters(raws: list[dict], table: str, budget: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = TABLES[table].settings
    hsml = sorted(
        (r for r in raws if mean_assignments_by_family(r)),
        key=lambda r: order.index(r["setting"]),
    )
    if not hsml:
        return None
    levels = ("level1", "level2")
    fig, axes = plt.subplots(
        len(hsml), 2, figsize=(12, 3.4 * len(hsml)), squeeze=False, constrained_layout=True
    )
    for row, raw in enumerate(hsml):
        for col, level in enumerate(levels):
            by_family = mean_assignments_by_family(raw)[level]
            families = [f for f in FAMILIES if f in by_family]
            matrix = np.array([by_family[f] for f in families])
            assignment_heatmap(
                fig,
                axes[row, col],
                matrix,
                families,
                f"{METHOD_LABELS.get(raw['method'], raw['method'])} {raw['setting']}: {level} assignment"
                + _nmi_suffix(raw, level),
            )
    fig.suptitle(f"{table}: mean soft cluster assignment per task family (budget {budget})")
    path = save_png(fig, path)
    plt.close(fig)
    return path


def plot_growth(raws: list[dict], table: str, budget: str, path: Path) -> Path | None:
    """Window query loss of each continual model, with family arrivals and cluster additions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hsmlbench.domains.regression.tasks import CONTINUAL_SCHEDULE

    raws = [r for r in raws if r.get("window_query_loss")]
    if not raws:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.5))
    colours = {"hsml-s2": "tab:blue", "hsml-s10": "tab:orange", "hsml-d": "tab:green"}
    order = TABLES[table].methods
    for raw in sorted(raws, key=lambda r: order.index(r["method"])):
        points = np.array(raw["window_query_loss"])
        ax.plot(
            points[:, 0],
            points[:, 1],
            marker=".",
            color=colours.get(raw["method"]),
            label=METHOD_LABELS.get(raw["method"], raw["method"]),
        )
        for event in raw.get("events", []):
            ax.axvline(event["iteration"], color=colours.get(raw["method"]), ls=":", lw=1.5)
            ax.annotate(
                f"+cluster ({event['n_clusters']})",
                (event["iteration"], event["window_loss"]),
                textcoords="offset points",
                xytext=(4, 8),
                fontsize=8,
                color="tab:green",
            )
    for start, family in CONTINUAL_SCHEDULE:
        if start > 0:
            ax.axvline(start, color="grey", ls="--", lw=1)
            ax.text(start, ax.get_ylim()[1], f" {family} joins", va="top", fontsize=9, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("meta-training iteration")
    ax.set_ylabel("window mean post-adaptation query MSE")
    ax.set_title(
        f"{table}: continual stream, window losses (budget {budget}); dotted: cluster added"
    )
    ax.legend()
    path = save_png(fig, path)
    plt.close(fig)
    return path


def write_figures(table: str, budget: str, out_dir: Path) -> list[Path]:
    """Every figure of regression ``table`` that the finished runs allow."""
    if table not in TABLES or budget not in BUDGETS:
        return []
    raws = _raws(out_dir, table, budget)
    folder = Path(out_dir) / "figures"
    if table == "T1":
        written = [
            plot_fits(raws, table, budget, folder / f"{table}_fits.png"),
            plot_clusters(raws, table, budget, folder / f"{table}_clusters.png"),
        ]
    elif table == "T2":
        written = [plot_growth(raws, table, budget, folder / f"{table}_growth.png")]
    else:
        written = []
    return [p for p in written if p is not None]


def table_notes(raws: list[dict], table: str) -> list[str]:
    """The notes a regression table's finished runs support: which clusters each family uses,
    how well HSML's tree separates them, HSML-D's growth events, MAML's seeds."""
    first_seed = [r for r in raws if r["seed"] == raws[0]["seed"]] if raws else []
    notes = [
        cluster_note(first_seed, table),
        cluster_structure_note(raws),
        growth_note(raws),
        *maml_seed_notes(raws),
    ]
    return [note for note in notes if note]


def maml_seed_notes(raws: list[dict]) -> list[str]:
    """MAML's seeds side by side (where its test MSE goes, per family; the fraction of θ0's
    ReLU units dead on all of [-5, 5]; the final training query loss), with the rank
    correlation between dead layer-2 units and test MSE: why seeds of MAML disagree."""
    from scipy.stats import spearmanr

    notes = []
    for setting in sorted({r["setting"] for r in raws if r["method"] == "maml"}):
        seeds = sorted(
            (r for r in raws if r["method"] == "maml" and r["setting"] == setting),
            key=lambda r: r["seed"],
        )
        seeds = [r for r in seeds if r.get("theta0_dead_units")]
        if len(seeds) < 2:
            continue
        lines = []
        for r in seeds:
            family = family_means(r)
            dead = r["theta0_dead_units"]
            final = r["train_query_loss"][-1][1] if r.get("train_query_loss") else float("nan")
            lines.append(
                f"- seed {r['seed']}: test MSE {np.mean(r['per_task']):.3f} (sin {family.get('sin', float('nan')):.3f}, "
                f"line {family.get('line', float('nan')):.3f}, quadratic "
                f"{family.get('quadratic', float('nan')):.3f}, cubic {family.get('cubic', float('nan')):.3f}); "
                f"dead units in θ0 layer 1 {dead[0]:.0%}, layer 2 {dead[1]:.0%}; final training "
                f"query MSE {final:.3f}"
            )
        text = (
            f"MAML {setting}, seed by seed (what differs between seeds; a θ0 unit is dead when "
            "its ReLU outputs 0 for every x in [-5, 5], so it cannot help a task until the "
            "inner loop revives it):\n\n" + "\n".join(lines)
        )
        if len(seeds) >= 4:
            rho, p = spearmanr(
                [r["theta0_dead_units"][1] for r in seeds], [np.mean(r["per_task"]) for r in seeds]
            )
            text += (
                f"\n\nRank correlation between layer-2 dead units and test MSE over the "
                f"{len(seeds)} seeds: Spearman ρ = {rho:.2f} (p = {p:.2g}); a correlation, not "
                "a cause."
            )
        notes.append(text)
    return notes


def growth_note(raws: list[dict]) -> str | None:
    """Where HSML-D added clusters, and the window losses that triggered each addition."""
    lines = []
    for raw in raws:
        for e in raw.get("events", []):
            if e.get("event") == "cluster_added":
                lines.append(
                    f"{METHOD_LABELS.get(raw['method'], raw['method'])} seed {raw['seed']}: cluster "
                    f"{e['n_clusters']} added at iteration {e['iteration']:,} (window loss "
                    f"{e['window_loss']:.3f} vs previous {e['previous_window_loss']:.3f}, ratio {e['ratio']:.2f})"
                )
    growing = [r for r in raws if (r.get("config", {}).get("continual") or {}).get("grow")]
    if not lines and not growing:
        return None
    if not lines:
        return "HSML-D added no cluster in this run (the window loss never rose above μ times the previous window's)."
    return "Cluster growth (`figures/T2_growth.png`):\n\n" + "\n".join(
        f"- {line}" for line in lines
    )


def _nmi_suffix(raw: dict, level: str) -> str:
    structure = cluster_structure_of(raw)
    return f" (NMI {structure['nmi']:.2f})" if structure and level == "level1" else ""


def cluster_structure_note(raws: list[dict]) -> str | None:
    """Per seed: how well the level-1 clusters separate the task families (NMI, top weights)."""
    lines = []
    for raw in raws:
        structure = cluster_structure_of(raw)
        if not structure:
            continue
        weights = ", ".join(
            f"{family} {weight:.2f} (cluster {structure['top_cluster'][family]})"
            for family, weight in structure["top_weight"].items()
        )
        label = METHOD_LABELS.get(raw["method"], raw["method"])
        lines.append(
            f"- {label} {raw['setting']}, seed {raw['seed']}: NMI {structure['nmi']:.3f}; "
            f"mean top weight per family: {weights}"
        )
    if not lines:
        return None
    if any(raw.get("legacy") and cluster_structure_of(raw) for raw in raws):
        lines.append(
            "- (rows from version-1 raw records: their cluster structure is read as those "
            "records stored it; they kept no per-task assignments to recompute it from)"
        )
    return (
        "Cluster structure over the test tasks: normalized mutual information between a "
        "task's family and its most weighted level-1 cluster (1: each family has clusters of "
        "its own; 0: the cluster says nothing about the family), and per family the largest "
        "weight of its mean level-1 assignment (1/K: no preference).\n\n" + "\n".join(lines)
    )


def cluster_note(raws: list[dict], table: str = "T1") -> str | None:
    """A sentence for the table's markdown saying what the cluster heatmap shows, from data."""
    if table != "T1":
        return None
    parts, n_clusters = [], None
    for raw in raws:
        by_family = mean_assignments_by_family(raw).get("level1")
        if not by_family:
            continue
        n_clusters = len(next(iter(by_family.values())))
        described = ", ".join(
            f"{family} → cluster {int(np.argmax(v)) + 1} ({max(v):.2f})"
            for family, v in by_family.items()
        )
        parts.append(f"{raw['setting']}: {described}")
    if not parts:
        return None
    return (
        "Cluster interpretation (`figures/T1_clusters.png`): HSML's mean level-1 soft assignment "
        "per task family, over the test tasks; each family's most used cluster and its mean "
        "weight: " + "; ".join(parts) + ". A weight near 1 means the family has a cluster of its "
        f"own; near 1/K (here 1/{n_clusters}) means the tree does not "
        "separate it."
    )
