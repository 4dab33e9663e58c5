"""Figures that show a table's verdicts at a glance, drawn from the table's JSON only (its
``summary``): PNG for the pages, PDF beside it for a paper.

- ``<table>_cells``: a forest plot of every cell. Per row the published value with its 95% CI
  (black square) and ours: the mean with the seeds × tasks interval (coloured by the agreement
  verdict) and each seed's mean as a dot.
- ``<table>_claims``: every claim's difference (first method minus second) with its seeds ×
  tasks interval and the zero line, the claimed side shaded, coloured by verdict;
  ``<table>_effects`` for the ablations: each change's difference from the row it varies.
"""

from __future__ import annotations

from pathlib import Path

from hsmlbench.report.paper_reference import METHOD_LABELS
from hsmlbench.report.plotting import save_png_and_pdf

AGREEMENT_COLOURS = {"consistent": "tab:blue", "ours higher": "tab:red", "ours lower": "tab:red"}
CLAIM_COLOURS = {"supported": "tab:green", "contradicted": "tab:red", "not supported": "tab:gray"}
EFFECT_COLOURS = {"lower": "tab:purple", "higher": "tab:orange", "no clear effect": "tab:gray"}
ROW_HEIGHT_IN = 0.42


def figure_names(table: str, summary: dict) -> dict[str, str]:
    """Link text → file name (under ``figures/``) of each figure ``write_verdict_figures``
    draws for this summary."""
    if not summary["cells"]:
        return {}
    names = {"every cell (PNG)": f"{table}_cells.png", "every cell (PDF)": f"{table}_cells.pdf"}
    if summary.get("effects"):
        names |= {
            "every change's effect (PNG)": f"{table}_effects.png",
            "every change's effect (PDF)": f"{table}_effects.pdf",
        }
    if summary["comparisons"]:
        names |= {
            "every claim's difference (PNG)": f"{table}_claims.png",
            "every claim's difference (PDF)": f"{table}_claims.pdf",
        }
    return names


def _labels(data: dict) -> dict[str, str]:
    return METHOD_LABELS | {m: i["label"] for m, i in data.get("extra_methods", {}).items()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(data: dict) -> str:
    budget = data["budget"]
    seeds = sorted({s for c in data["summary"]["cells"] for s in c["seeds"]})
    return (
        f"budget {budget['name']}"
        + ("" if budget["name"] == "paper" else " (NOT the paper budget)")
        + f", {len(seeds)} seed{'s' if len(seeds) != 1 else ''}, "
        f"{budget['n_test_tasks']:,} test tasks"
    )


def cell_label(cell: dict, labels: dict[str, str], most_seeds: int) -> str:
    """A cell's method, with its number of seeds where it has fewer than the table's fullest
    cell (diverged runs, a plug-in run with fewer seeds): its interval is then narrower in
    what it covers, and with one seed it is the test-task interval alone."""
    name = labels.get(cell["method"], cell["method"])
    n = len(cell["seeds"])
    return name if n >= most_seeds else f"{name} ({n} seed{'s' if n != 1 else ''})"


def plot_cells(data: dict, summary: dict, path: Path) -> list[Path]:
    """The forest plot of every cell, one panel per setting (each on its own scale)."""
    plt = _pyplot()
    labels = _labels(data)
    cells = summary["cells"]
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    per = [[c for c in cells if c["setting"] == s] for s in settings]
    heights = [len(p) + 0.8 for p in per]
    fig, axes = plt.subplots(
        len(settings),
        1,
        figsize=(8.0, ROW_HEIGHT_IN * sum(heights) + 1.4),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    metric = data.get("metric", "MSE")
    lower = data.get("lower_is_better", True)
    most_seeds = max(len(c["seeds"]) for c in cells)
    for ax, setting, group in zip(axes[:, 0], settings, per):
        for i, cell in enumerate(group):
            y = len(group) - 1 - i
            if cell.get("published") is not None:
                ci = cell.get("published_ci95")
                ax.errorbar(
                    cell["published"],
                    y + 0.2,
                    xerr=ci if ci is not None else None,
                    fmt="s",
                    mfc="white",
                    color="gray" if cell.get("published_secondary") else "black",
                    capsize=3,
                    ms=6,
                    label="published ± 95% CI"
                    + (" (secondary)" if cell.get("published_secondary") else ""),
                )
            low_high = cell.get("crossed_interval")
            if low_high is None:  # one seed: the test-task interval
                low_high = [cell["mean"] - cell["ci95"], cell["mean"] + cell["ci95"]]
            colour = AGREEMENT_COLOURS.get(cell.get("verdict"), "tab:blue")
            ax.plot(low_high, [y - 0.1] * 2, color=colour, lw=2.5, solid_capstyle="butt")
            ax.plot(
                cell["mean"],
                y - 0.1,
                "o",
                color=colour,
                ms=7,
                label="ours, seeds × tasks 95% (one seed: tasks)",
            )
            ax.plot(
                cell["seed_means"],
                [y - 0.3] * len(cell["seed_means"]),
                ".",
                color="dimgray",
                ms=6,
                alpha=0.8,
                label="ours, each seed's mean",
            )
            verdict = cell.get("verdict")
            if verdict:
                p = cell.get("agreement_p")
                text = verdict + (f" (p = {p:.2g})" if p is not None and p > 0 else "")
                ax.annotate(
                    text,
                    xy=(1.01, y),
                    xycoords=("axes fraction", "data"),
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        ax.set_yticks(
            range(len(group)), [cell_label(c, labels, most_seeds) for c in reversed(group)]
        )
        ax.set_ylim(-0.7, len(group) - 0.3)
        ax.set_title(setting, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"{metric} ({'lower' if lower else 'higher'} is better)", fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(names, handles))
    fig.legend(
        unique.values(),
        unique.keys(),
        loc="lower center",
        ncol=len(unique),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    what = "published vs ours" if any(c.get("published") is not None for c in cells) else "ours"
    fig.suptitle(f"{data['table']}: {what}, every cell ({_subtitle(data)})", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    paths = save_png_and_pdf(fig, path)
    plt.close(fig)
    return paths


def plot_differences(
    rows: list[tuple[str, float, list | None, str, str]],
    path: Path,
    title: str,
    xlabel: str,
    claimed_below: bool | None,
) -> list[Path]:
    """One row per (label, difference, interval, verdict text, colour), the zero line, and the
    claimed side shaded when there is one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.0, ROW_HEIGHT_IN * (len(rows) + 0.8) + 1.2))
    for i, (_label, difference, interval, verdict, colour) in enumerate(rows):
        y = len(rows) - 1 - i
        numbers = f"{difference:+.3f}"
        if interval is not None:
            ax.plot(interval, [y, y], color=colour, lw=2.5, solid_capstyle="butt")
            ax.plot(interval, [y, y], "|", color=colour, ms=9)
            numbers += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
        ax.plot(difference, y, "o", color=colour, ms=6)
        ax.annotate(
            f"{numbers}: {verdict}",
            xy=(1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
            color=colour,
        )
    ax.axvline(0, color="black", lw=1)
    if claimed_below is not None:
        low, high = ax.get_xlim()
        if claimed_below:
            ax.axvspan(low, 0, color="tab:green", alpha=0.07, lw=0)
        else:
            ax.axvspan(0, high, color="tab:green", alpha=0.07, lw=0)
        ax.set_xlim(low, high)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    paths = save_png_and_pdf(fig, path)
    plt.close(fig)
    return paths


def _verdict_colour(verdict: str, colours: dict[str, str]) -> str:
    for key, colour in colours.items():
        if verdict.startswith(key):
            return colour
    return "tab:gray"


def write_verdict_figures(data: dict, summary: dict, out_dir: Path) -> list[Path]:
    """Every verdict figure of the table under ``out_dir/figures/``; the files written."""
    if not summary["cells"]:
        return []
    data = data | {"summary": summary}
    folder = Path(out_dir) / "figures"
    name = data["table"]
    labels = _labels(data)
    lower = data.get("lower_is_better", True)
    metric = data.get("metric", "MSE")
    written = plot_cells(data, summary, folder / f"{name}_cells.png")
    if summary.get("effects"):
        rows = [
            (
                f"{labels.get(e['change'], e['change'])} − "
                f"{labels.get(e['reference'], e['reference'])} ({e['setting']})",
                e["mean_difference"],
                e["crossed_interval"] if min(e["n_seeds"]) > 1 else None,
                e["verdict"],
                _verdict_colour(e["verdict"], EFFECT_COLOURS),
            )
            for e in summary["effects"]
        ]
        written += plot_differences(
            rows,
            folder / f"{name}_effects.png",
            f"{name}: effect of each change, seeds × tasks 95% ({_subtitle(data)})",
            f"difference in {metric}: changed row − the row it varies",
            None,
        )
    if summary["comparisons"]:
        rows = []
        for c in summary["comparisons"]:
            added = c.get("family", "paper") != "paper"
            rows.append(
                (
                    f"{labels.get(c['better'], c['better'])} vs "
                    f"{labels.get(c['worse'], c['worse'])} ({c['setting']})"
                    + (" [added]" if added else ""),
                    c["mean_difference"],
                    c["crossed_interval"] if min(c.get("n_seeds", [1])) > 1 else None,
                    c["verdict"],
                    _verdict_colour(c["verdict"], CLAIM_COLOURS),
                )
            )
        written += plot_differences(
            rows,
            folder / f"{name}_claims.png",
            f"{name}: each claim 'first better than second', seeds × tasks 95% ({_subtitle(data)})",
            f"difference in {metric}: first − second (the claim is "
            f"{'< 0' if lower else '> 0'}, shaded)",
            lower,
        )
    return written
