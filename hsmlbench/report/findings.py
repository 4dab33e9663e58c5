"""``FINDINGS.md``: what does not reproduce, what the ablations say about why, and how the
paper's other baselines fare.

Rendered from the table JSON files (``T1.json``, ``T2.json``, ``ablations.json``,
``T1-extended.json``) like the tables themselves: every sentence carries the number it rests
on, and each hypothesis's reading ("consistent with it", "against it", "not settled") follows
from the direction it predicts and the effect measured, by the rule written on the page. The
added methods of ``T1-extended`` (plug-ins) get their cells and their standing against the
paper's methods.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsmlbench.atomic import write_text
from hsmlbench.report import seed_statistics as ss
from hsmlbench.report.analysis import summarize
from hsmlbench.report.paper_reference import METHOD_LABELS, PUBLISHED
from hsmlbench.report.tables import provenance_line

# Each candidate cause of a departure (docs/PROTOCOL.md §7), the ablation rows that test it,
# and the effect each row should have if the cause is real ("lower" / "higher" MSE than the
# row it varies; None: either direction would count, no direction is predicted).
HYPOTHESES: tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...] = (
    (
        "Unequal optimisation: MUMOMAML alone gets the ±10 inner-gradient clamp and the outer "
        "norm clip 2.0, and that is what makes it beat HSML",
        (("mumomaml-noclip", "higher"), ("hsml-clipped", "lower"), ("maml-clipped", "lower")),
    ),
    (
        "The MUMOMAML authors clip the encoder and the model each on its own, not jointly",
        (("mumomaml-separate-clip", None),),
    ),
    (
        "Modulation strength: FiLM's unbounded (1 + γ)·a + β (which also rescales each task's "
        "inner-loop gradient) is MUMOMAML's advantage over HSML's gates in (0, 1)",
        (("mumomaml-gamma-only", "higher"), ("mumomaml-sigmoid-gate", "higher")),
    ),
    (
        "HSML's initializations: torch's defaults and zero tree biases (this project's earlier "
        "runs) instead of the authors' Glorot / bias-1.0 / truncated-normal ones",
        (("hsml-torch-init", "higher"),),
    ),
    (
        "Level-2 assignment by distances to centres, as the paper's text describes it, instead "
        "of the authors' code's linear map",
        (("hsml-centres", None),),
    ),
    (
        "The fast meta-step (explicit inner gradients, compiled) learns something other than "
        "the autograd reference",
        (("hsml-autograd", None),),
    ),
)

READING_RULE = (
    "Reading: a row whose effect (two-sided paired tests, Holm-corrected, and the crossed "
    "seeds × tasks interval excluding 0) goes the predicted way is 'consistent with' the "
    "hypothesis; the opposite way, 'against' it; no clear effect, 'not settled' at this "
    "number of seeds. Rows without a predicted direction report the effect only."
)


def _load(out_dir: Path, table: str) -> dict | None:
    path = Path(out_dir) / f"{table}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _interval(bounds, n_seeds=None) -> str:
    """A seeds × tasks interval, "—" where a side has one seed (as the tables show it: with
    one seed the seed-to-seed variance is unknown)."""
    if not bounds or (n_seeds is not None and min(n_seeds) < 2):
        return "—"
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _departures(table: str, summary: dict) -> list[str]:
    lines = []
    for cell in summary["cells"]:
        if cell.get("verdict") in (None, "consistent"):
            continue
        seeds = ", ".join(f"{m:.3f}" for m in cell["seed_means"])
        per_seed = ", ".join(cell.get("per_seed_verdicts", []))
        lines.append(
            f"- {table} {_label(cell['method'])} {cell['setting']}: ours {cell['mean']:.3f} "
            f"(seeds × tasks {_interval(cell.get('crossed_interval'))}; seed means {seeds}) "
            f"against published {cell['published']:.3f} ± {cell.get('published_ci95') or 0:.3f}: "
            f"{cell['verdict']}, p = {cell['agreement_p']:.2g}; per seed: {per_seed}"
            + ("; seed-sensitive" if cell.get("seed_sensitive") else "")
        )
    for claim in summary["comparisons"]:
        if claim["verdict"].startswith("supported"):
            continue
        lines.append(
            f"- {table} claim '{claim['claim']}': difference {claim['mean_difference']:+.3f} "
            f"(seeds × tasks {_interval(claim.get('crossed_interval'), claim.get('n_seeds'))}, P(better) "
            f"{claim.get('probability_of_improvement', float('nan')):.2f}): {claim['verdict']}"
        )
    return lines


def _reading(verdict: str, predicted: str | None) -> str:
    if predicted is None:
        return "effect only (no direction predicted)"
    if verdict == "no clear effect":
        return "not settled"
    return "consistent with it" if verdict == predicted else "against it"


def _diverged_text(diverged: list[dict], change: str) -> str:
    """ "seed 0 diverged at iteration 33,692 of 70,000" for each diverged run of ``change``."""
    runs = [d for d in diverged if d["method"] == change]
    return "; ".join(
        f"seed {d['seed']} diverged at iteration "
        f"{d['diverged_at_iteration']:,} of {d['iterations']:,}"
        if d.get("diverged_at_iteration") is not None and d.get("iterations")
        else f"seed {d['seed']} diverged in evaluation"
        for d in sorted(runs, key=lambda d: d["seed"])
    )


def _ablation_lines(ablations: dict, summary: dict) -> list[str]:
    effects = {e["change"]: e for e in summary.get("effects", [])}
    diverged = ablations.get("diverged", [])
    lines = []
    for hypothesis, tests in HYPOTHESES:
        lines += ["", f"### {hypothesis}", ""]
        for change, predicted in tests:
            effect = effects.get(change)
            lost = _diverged_text(diverged, change)
            if effect is None:
                lines.append(
                    f"- `{change}`: every seed run diverged ({lost}); no effect to measure"
                    if lost
                    else f"- `{change}`: not run yet"
                )
                continue
            lines.append(
                f"- `{change}` against {_label(effect['reference'])}: MSE "
                f"{effect['mean']:.3f} vs {effect['reference_mean']:.3f}, difference "
                f"{effect['mean_difference']:+.3f} (seeds × tasks "
                f"{_interval(effect['crossed_interval'], effect['n_seeds'])}, {effect['n_seeds'][0]} × "
                f"{effect['n_seeds'][1]} seeds; paired t p (Holm) {effect['t_p_holm']:.2g}): "
                f"{effect['verdict']}"
                + (f", predicted {predicted}" if predicted else "")
                + f" → {_reading(effect['verdict'], predicted)}"
                + (
                    f" ({lost}; not in the mean: the effect is over the seeds that finished)"
                    if lost
                    else ""
                )
            )
    lines += ["", "### The published MUMOMAML value and one inner step", ""]
    lines += _step1_lines(ablations, summary)
    lines += ["", "### Does HSML beat the changed MUMOMAMLs?", ""]
    lines += _hsml_against_variants(ablations)
    return lines


def _errors(data: dict, method: str, setting: str) -> np.ndarray | None:
    rows = sorted(
        (r for r in data["rows"] if r["method"] == method and r["setting"] == setting),
        key=lambda r: r["seed"],
    )
    return np.asarray([r["per_task"] for r in rows], dtype=float) if rows else None


def _step1_lines(ablations: dict, summary: dict) -> list[str]:
    setting = "5-shot"
    errors = _errors(ablations, "mumomaml-step1", setting)
    published = PUBLISHED.get(("T1", "mumomaml", setting))
    if errors is None or published is None:
        return ["- not available yet (needs T1's MUMOMAML runs with per-step errors)"]
    step1 = ss.agreement_with_published(errors, published.mean, published.ci95)
    ten = _errors(ablations, "mumomaml", setting)
    after_ten = ss.agreement_with_published(ten, published.mean, published.ci95)
    return [
        f"- Hypothesis: the published MUMOMAML {setting} value ({published.mean:.3f} ± "
        f"{published.ci95:.3f}) was scored after about one inner step (the MUMOMAML authors' "
        "regression code defaults to a single update).",
        f"- Ours after 1 step: {step1.mean:.3f} ± {step1.ci95:.3f} (seeds and tasks): "
        f"{_versus(step1.verdict)} the published value (p = {step1.p:.2g}); after 10 steps: "
        f"{after_ten.mean:.3f} ± {after_ten.ci95:.3f}: {_versus(after_ten.verdict)} it (p = "
        f"{after_ten.p:.2g}).",
    ]


def _versus(verdict: str) -> str:
    return "consistent with" if verdict == "consistent" else f"{verdict} than"


def _hsml_against_variants(ablations: dict) -> list[str]:
    """HSML − each MUMOMAML row on the same tasks (the paper's claim, re-asked)."""
    setting = "5-shot"
    hsml = _errors(ablations, "hsml", setting)
    if hsml is None:
        return ["- not available yet (needs T1's HSML runs)"]
    lines = []
    for method in (
        "mumomaml",
        "mumomaml-noclip",
        "mumomaml-gamma-only",
        "mumomaml-sigmoid-gate",
        "mumomaml-step1",
    ):
        other = _errors(ablations, method, setting)
        if other is None:
            continue
        diff = ss.crossed_bootstrap_difference(hsml, other, n_resamples=10_000, seed=0)
        p_better = ss.probability_of_improvement(hsml.mean(axis=1), other.mean(axis=1), True)
        side = (
            "HSML better"
            if diff.high < 0
            else "HSML worse"
            if diff.low > 0
            else "no clear difference"
        )
        lines.append(
            f"- HSML − `{method}`: {diff.estimate:+.3f} (seeds × tasks {_interval([diff.low, diff.high])}, "
            f"P(HSML better) over seed pairs {p_better:.2f}): {side}"
        )
    return lines


EXTENDED_INTRO = (
    "Methods the HSML paper also compares with on this benchmark, beyond its poster, run as "
    "plug-ins on T1's tasks, seeds and test tasks (`T1-extended.md`). Their published values "
    "are secondary (not on the poster; their sources are in that page's notes) and they are in "
    "none of the paper's claims. 'Beats' and 'trails' are the added comparisons' verdicts "
    "('added method better than paper method' supported or contradicted by the rule of T1's "
    "claims, each added method its own Holm family); anything else is 'no clear difference'."
)


def _standing(comparison: dict) -> str:
    """How an added method stands against one paper method, from "added better than it"."""
    verdict = comparison["verdict"]
    if verdict.startswith("supported"):
        return "beats"
    if verdict.startswith("contradicted"):
        return "trails"
    return "no clear difference from"


def _extended_lines(extended: dict, summary: dict) -> list[str]:
    """Each added method's cells against their published values and the paper's methods."""
    cells = {(c["method"], c["setting"]): c for c in summary["cells"]}
    diverged = extended.get("diverged", [])
    settings = list(dict.fromkeys(c["setting"] for c in summary["cells"])) or ["5-shot"]
    settings += sorted({d["setting"] for d in diverged} - set(settings))
    lines = [EXTENDED_INTRO]
    for method, info in extended.get("extra_methods", {}).items():
        lines += ["", f"### {info.get('label', method)}", ""]
        for setting in settings:
            lost = _diverged_text([d for d in diverged if d["setting"] == setting], method)
            cell = cells.get((method, setting))
            if cell is None:
                lines.append(
                    f"- {setting}: every seed run diverged ({lost}); no result"
                    if lost
                    else f"- {setting}: not run yet"
                )
                continue
            published = cell.get("published")
            against = (
                f"against published {published:.3f} ± {cell.get('published_ci95') or 0:.3f}"
                + (" (secondary)" if cell.get("published_secondary") else "")
                + f": {cell['verdict']}, p = {cell['agreement_p']:.2g}"
                if published is not None
                else "(no published value)"
            )
            standings: dict[str, list[str]] = {}
            for c in summary["comparisons"]:
                if c["family"] == method and c["setting"] == setting:
                    interval = _interval(c.get("crossed_interval"), c.get("n_seeds"))
                    standings.setdefault(_standing(c), []).append(
                        f"{_label(c['worse'])} ({c['mean_difference']:+.3f}, "
                        + (
                            f"seeds × tasks {interval})"
                            if interval != "—"
                            else "one seed: on the test tasks only)"
                        )
                    )
            versus = "; ".join(
                f"{standing} {', '.join(names)}"
                for standing in ("beats", "trails", "no clear difference from")
                if (names := standings.get(standing))
            )
            interval = _interval(cell.get("crossed_interval"), [len(cell["seeds"])])
            lines.append(
                f"- {setting}: ours {cell['mean']:.3f} over {len(cell['seeds'])} seed"
                + (
                    f"s (seeds × tasks {interval}"
                    if len(cell["seeds"]) > 1
                    else " (no interval over seeds"
                )
                + (f"; {lost}, not in the mean" if lost else "")
                + f") {against}. Against the paper's methods (ours − theirs): "
                + (versus or "no comparison")
                + "."
            )
    return lines


def render_findings(out_dir: Path, summaries: dict[str, dict] | None = None) -> str | None:
    """The findings page from the table JSON files under ``out_dir`` (None: no T1 yet).

    ``summaries``: the analyses of the tables written in this run (by table name); a table
    not among them is analysed again here, so that a table written by older report code
    never lends its stale analysis."""
    summaries = dict(summaries or {})

    def summary_of(name: str, data: dict) -> dict:
        if name not in summaries:
            summaries[name] = summarize(data)
        return summaries[name]

    t1 = _load(out_dir, "T1")
    if t1 is None:
        return None
    sources = [
        name
        for name in ("T1", "T2", "ablations", "T1-extended")
        if _load(out_dir, name) is not None
    ]
    budget = t1["budget"]["name"]
    lines = [
        "# Findings: what does not reproduce, and what the ablations say",
        "",
        f"Generated by `hsmlbench` from {', '.join(f'`{s}.json`' for s in sources)}; do not "
        "edit by hand. Budget: "
        f"**{budget}**{'' if budget == 'paper' else ' — NOT the paper budget'}. Every number "
        "below is in those files; intervals and verdict rules are the tables' own.",
        "",
        *(f"- `{s}.json`: {provenance_line(_load(out_dir, s))}" for s in sources),
        "",
        "## Cells and claims that do not reproduce",
        "",
    ]
    for name in ("T1", "T2"):
        data = _load(out_dir, name)
        if data is not None:
            lines += _departures(name, summary_of(name, data)) or [
                f"- {name}: every cell and claim reproduces"
            ]
    ablations = _load(out_dir, "ablations")
    lines += ["", "## Candidate causes and what the ablations settled", ""]
    if ablations is None:
        lines.append(
            "The ablations have not run at this budget: `hsmlbench reproduce --tables "
            f"ablations --budget {budget} --seeds 2`."
        )
    else:
        lines += [READING_RULE]
        lines += _ablation_lines(ablations, summary_of("ablations", ablations))
    extended = _load(out_dir, "T1-extended")
    if extended is not None and extended.get("extra_methods"):
        lines += ["", "## The paper's other regression baselines", ""]
        lines += _extended_lines(extended, summary_of("T1-extended", extended))
    return "\n".join(lines) + "\n"


def write_findings(out_dir: Path, summaries: dict[str, dict] | None = None) -> Path | None:
    text = render_findings(out_dir, summaries)
    if text is None:
        return None
    path = Path(out_dir) / "FINDINGS.md"
    write_text(path, text)
    return path
