"""A table in the paper's own layout (methods as rows, settings or datasets as columns), for a
paper to take: markdown (``<table>.paper.md``) and LaTeX (``<table>.paper.tex``).

Rendered from a table's JSON and the analysis it holds (``summary``), like the full table
(``hsmlbench.report.tables``): nothing here computes a statistic, and every number printed is
one the JSON holds, rounded. Each cell: ours ± the 95% interval over seeds and test tasks that
the agreement test uses (``combined_ci95``), beside or under the published value (which the
JSON holds from ``hsmlbench.report.paper_reference`` or a plug-in's declaration). Marks:
↑ / ↓ where ours disagrees with the published value, ‡ where a claim of the paper that this
method beats another in this column is contradicted; the claims follow in a table of their
own. The ablations' table gives each change's effect in its row instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from hsmlbench.atomic import write_text
from hsmlbench.report import latex
from hsmlbench.report.analysis import summarize
from hsmlbench.report.paper_reference import METHOD_LABELS
from hsmlbench.report.tables import code_versions_line, load_table, render_latex
from hsmlbench.report.verdict_figures import figure_names, write_verdict_figures

# Up to this many settings, the published value sits in a column beside ours; more (T3, T4:
# four datasets) and it takes a second row under ours, so that the table keeps to the width.
MAX_SETTINGS_SIDE_BY_SIDE = 2

UP, DOWN, CONTRADICTED, SECONDARY = "up", "down", "contradicted", "secondary"
_MD_MARK = {UP: "↑", DOWN: "↓", CONTRADICTED: "‡", SECONDARY: "(s)"}
_TEX_MARK = {UP: "\\uparrow", DOWN: "\\downarrow", CONTRADICTED: "\\ddagger", SECONDARY: "s"}
LEGEND = {
    UP: "↑ / ↓: ours significantly higher / lower than the published value (two-sided z-test, "
    "both standard errors combined, p < 0.05).",
    CONTRADICTED: "‡: the paper claims this method beats another in this column; our run "
    "significantly reverses it (see the claims).",
    SECONDARY: "(s): a published value not from the paper's poster (secondary; its source is "
    "in the full table's notes).",
    "seeds": "(k seeds): fewer seeds than the caption's; the full table's notes say why.",
}


@dataclass
class Value:
    """One number of the table, formatted, with its marks."""

    text: str
    marks: list[str] = field(default_factory=list)
    bold: bool = False
    note: str = ""  # e.g. "4 seeds", where fewer seeds than the caption's


@dataclass
class Row:
    label: str
    ours: list[Value | None]
    published: list[Value | None]
    effect: list[str] | None = None  # ablations: compared with, difference, interval, effect


@dataclass
class PaperTable:
    """The format-neutral model that markdown and LaTeX both render."""

    name: str
    caption: str
    settings: list[str]
    rows: list[Row]
    has_published: bool
    legend: list[str]
    ablation: bool = False
    claims_caption: str = ""
    claims: list[list[str]] = field(default_factory=list)
    added_from: int | None = None  # index of the first added comparison (not a paper claim)


CLAIM_HEADERS = ["claim", "setting", "difference", "seeds × tasks 95%", "verdict"]
EFFECT_HEADERS = ["compared with", "difference", "seeds × tasks 95%", "effect"]


def _digits(data: dict) -> int:
    return 3 if data.get("lower_is_better", True) else 2


def _num(value: float, digits: int, sign: bool = False) -> str:
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _interval(bounds: list | None, digits: int) -> str:
    return "—" if bounds is None else f"[{_num(bounds[0], digits)}, {_num(bounds[1], digits)}]"


def _labels(data: dict) -> dict[str, str]:
    return METHOD_LABELS | {m: i["label"] for m, i in data.get("extra_methods", {}).items()}


def _seeds_phrase(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        listed = f"{seeds[0]}-{seeds[-1]}"
    else:
        listed = ", ".join(map(str, seeds))
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({listed})"


def build(data: dict, summary: dict | None = None) -> PaperTable | None:
    """The paper table of ``data`` (a table's JSON), or None when no cell has run."""
    summary = summary if summary is not None else data.get("summary") or summarize(data)
    cells = summary["cells"]
    if not cells:
        return None
    digits = _digits(data)
    labels = _labels(data)
    lower = data.get("lower_is_better", True)
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    by_key = {(c["method"], c["setting"]): c for c in cells}
    all_seeds = sorted({s for c in cells for s in c["seeds"]})
    effects = {(e["change"], e["setting"]): e for e in summary.get("effects", [])}
    ablation = bool(effects)
    has_published = any(c.get("published") is not None for c in cells)
    one_seed = any(c.get("combined_ci95") is None for c in cells)
    contradicted = {
        (c["better"], c["setting"])
        for c in summary["comparisons"]
        if c.get("family", "paper") == "paper" and c["verdict"].startswith("contradicted")
    }
    best = {}
    if not ablation:
        for setting in settings:
            means = [by_key[m, setting]["mean"] for m in methods if (m, setting) in by_key]
            best[setting] = min(means) if lower else max(means)

    used: set[str] = set()
    rows = []
    for method in methods:
        for setting_group in [settings] if not ablation else [[s] for s in settings]:
            row = Row(labels.get(method, method), [], [])
            for setting in setting_group:
                cell = by_key.get((method, setting))
                row.ours.append(_ours(cell, digits, best.get(setting), contradicted, all_seeds))
                row.published.append(_published(cell, digits))
                for value in (row.ours[-1], row.published[-1]):
                    if value is not None:
                        used |= set(value.marks) | ({"seeds"} if value.note else set())
            if ablation:
                if by_key.get((method, setting_group[0])) is None:
                    continue
                effect = effects.get((method, setting_group[0]))
                row.effect = (
                    ["—"] * 4
                    if effect is None
                    else [
                        labels.get(effect["reference"], effect["reference"]),
                        _num(effect["mean_difference"], digits, sign=True),
                        _interval(
                            effect["crossed_interval"] if min(effect["n_seeds"]) > 1 else None,
                            digits,
                        ),
                        effect["verdict"],
                    ]
                )
                if len(settings) > 1:
                    row.label += f" ({setting_group[0]})"
            rows.append(row)

    budget = data["budget"]
    title = data.get("title", "").removesuffix(" ± 95% CI")
    caption = (
        f"{title} ({'lower' if lower else 'higher'} is better). Ours: the mean over "
        f"{_seeds_phrase(all_seeds)} on the same {budget['n_test_tasks']:,} test tasks ± a 95% "
        "interval over seeds and test tasks together (mean ± 1.96·√(var(seed means)/S + "
        "var(task means)/T))"
        + ("; over test tasks only where one seed ran" if one_seed else "")
        + _published_phrase(cells)
        + (
            "; each change against the row it varies: the difference of the means, its "
            "seeds × tasks 95% interval and the effect by two-sided paired tests "
            "(Holm-corrected) and that interval"
            if ablation
            else ""
        )
        + f". Budget {budget['name']}: {budget['iterations']:,} meta-training iterations, "
        f"{budget['n_test_tasks']:,} test tasks"
        + ("" if budget["name"] == "paper" else " (NOT the paper budget)")
        + f". {_first_upper(code_versions_line(data))}."
    )
    legend = [LEGEND[UP]] if used & {UP, DOWN} else []
    legend += [LEGEND[key] for key in (CONTRADICTED, "seeds", SECONDARY) if key in used]
    if best:
        legend.append(f"Bold: the {'lowest' if lower else 'highest'} of our means in the column.")
    table = PaperTable(
        data["table"], caption, settings, rows, has_published, legend, ablation=ablation
    )
    _add_claims(table, data, summary, labels, digits)
    return table


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _published_phrase(cells: list[dict]) -> str:
    published = [c for c in cells if c.get("published") is not None]
    if not published:
        return ""
    with_ci = [c for c in published if c.get("published_ci95") is not None]
    if not with_ci:
        return "; published: the paper's mean (it gives no interval)"
    return "; published: the paper's mean ± its 95% CI over test tasks" + (
        " where it gives one" if len(with_ci) < len(published) else ""
    )


def _ours(cell, digits, best, contradicted, all_seeds) -> Value | None:
    if cell is None:
        return None
    half = cell.get("combined_ci95")
    half = cell["ci95"] if half is None else half
    marks = {"ours higher": [UP], "ours lower": [DOWN]}.get(cell.get("verdict"), [])
    if (cell["method"], cell["setting"]) in contradicted:
        marks = marks + [CONTRADICTED]
    n_seeds = len(cell["seeds"])
    return Value(
        f"{_num(cell['mean'], digits)} ± {_num(half, digits)}",
        marks,
        bold=cell["mean"] == best,
        note="" if n_seeds == len(all_seeds) else f"{n_seeds} seed{'s' if n_seeds != 1 else ''}",
    )


def _published(cell, digits) -> Value | None:
    if cell is None or cell.get("published") is None:
        return None
    text = _num(cell["published"], digits)
    if cell.get("published_ci95") is not None:
        text += f" ± {_num(cell['published_ci95'], digits)}"
    return Value(text, [SECONDARY] if cell.get("published_secondary") else [])


def _add_claims(table: PaperTable, data: dict, summary: dict, labels: dict, digits: int):
    paper = [c for c in summary["comparisons"] if c.get("family", "paper") == "paper"]
    added = [c for c in summary["comparisons"] if c.get("family", "paper") != "paper"]
    if not paper and not added:
        return
    lower = data.get("lower_is_better", True)
    table.claims_caption = (
        ("The paper's claims in our run" if paper else "Comparisons in our run")
        + (" and the added comparisons (not claims of the paper)" if paper and added else "")
        + f" ({data['table']}). Difference: the first method's mean minus the second's "
        + ("(claimed < 0)" if lower else "(claimed > 0)")
        + ", with its 95% interval over seeds and test tasks; the verdict from one-sided "
        "paired tests on the same test tasks (Holm-corrected) and that interval."
    )
    for comparison in paper + added:
        several = min(comparison.get("n_seeds", [1])) > 1
        table.claims.append(
            [
                f"{labels.get(comparison['better'], comparison['better'])} better than "
                f"{labels.get(comparison['worse'], comparison['worse'])}",
                comparison["setting"],
                _num(comparison["mean_difference"], digits, sign=True),
                _interval(comparison.get("crossed_interval") if several else None, digits),
                comparison["verdict"],
            ]
        )
    table.added_from = len(paper) if paper and added else None


# --- markdown --------------------------------------------------------------------------------


def _md(value: Value | None) -> str:
    if value is None:
        return "—"
    text = f"**{value.text}**" if value.bold else value.text
    marks = " ".join(_MD_MARK[m] for m in value.marks)
    return text + (" " + marks if marks else "") + (f" ({value.note})" if value.note else "")


def _side_by_side(table: PaperTable) -> bool:
    return len(table.settings) <= MAX_SETTINGS_SIDE_BY_SIDE or not table.has_published


def _md_grid(table: PaperTable) -> tuple[list[str], list[list[str]]]:
    if table.ablation:
        headers = ["method", f"{table.settings[0]}: ours" if len(table.settings) == 1 else "ours"]
        headers += EFFECT_HEADERS
        return headers, [[r.label, _md(r.ours[0]), *r.effect] for r in table.rows]
    headers, rows = ["method"], []
    if _side_by_side(table):
        for setting in table.settings:
            headers.append(f"{setting}: ours")
            headers += [f"{setting}: published"] if table.has_published else []
        for r in table.rows:
            cells = [r.label]
            for ours, published in zip(r.ours, r.published):
                cells += [_md(ours)] + ([_md(published)] if table.has_published else [])
            rows.append(cells)
    else:
        headers += table.settings
        for r in table.rows:
            rows.append([f"{r.label} (ours)"] + [_md(v) for v in r.ours])
            rows.append([f"{r.label} (published)"] + [_md(v) for v in r.published])
    return headers, rows


def render_paper_markdown(
    data: dict, summary: dict | None = None, links: str = "", figures: dict | None = None
) -> str:
    """The paper table as GitHub markdown; ``links``: a line of links to put under the title;
    ``figures``: caption → path of the figures to show at the end."""
    table = build(data, summary)
    name = data["table"]
    lines = [
        f"# {name} as a paper table",
        "",
        f"Generated by `hsmlbench` from `{name}.json`; do not edit by hand. The full analysis "
        f"(every interval, test and rule): [`{name}.md`]({name}.md).",
    ]
    if links:
        lines += ["", links]
    if table is None:
        return "\n".join(lines + ["", "No cell of this table has run at this budget."]) + "\n"
    headers, rows = _md_grid(table)
    lines += [
        "",
        f"**Table {name}.** {table.caption}",
        "",
        tabulate(rows, headers, tablefmt="github", disable_numparse=True),
    ]
    if table.legend:
        lines += ["", " ".join(table.legend)]
    if table.claims:
        split = table.added_from if table.added_from is not None else len(table.claims)
        lines += ["", f"**Claims.** {table.claims_caption}", ""]
        lines.append(
            tabulate(table.claims[:split], CLAIM_HEADERS, tablefmt="github", disable_numparse=True)
        )
        if table.added_from is not None:
            lines += [
                "",
                "Added comparisons (not claims of the paper):",
                "",
                tabulate(
                    table.claims[split:], CLAIM_HEADERS, tablefmt="github", disable_numparse=True
                ),
            ]
    for caption, path in (figures or {}).items():
        lines += ["", f"![{caption}]({path})"]
    return "\n".join(lines) + "\n"


# --- LaTeX -----------------------------------------------------------------------------------


def _tex(value: Value | None) -> str:
    if value is None:
        return "---"
    text = latex.escape(value.text)
    text = f"\\textbf{{{text}}}" if value.bold else text
    if value.marks:  # one superscript for all marks
        text += "$^{" + "".join(_TEX_MARK[m] for m in value.marks) + "}$"
    if value.note:
        text += f" {{\\scriptsize ({latex.escape(value.note)})}}"
    return text


def _tex_grid(table: PaperTable) -> tuple[str, list[str], list[str], list[list[str]], set]:
    """align, header rows, headers, rows and the rows followed by a rule."""
    settings = [latex.stacked(s) for s in table.settings]
    if table.ablation:
        headers = ["Method", settings[0] if len(settings) == 1 else "Ours"]
        headers += [latex.escape(h) for h in EFFECT_HEADERS]
        rows = [
            [latex.escape(r.label), _tex(r.ours[0]), *(latex.escape(c) for c in r.effect)]
            for r in table.rows
        ]
        return "lclrll", [], headers, rows, set()
    if _side_by_side(table):
        rows = []
        for r in table.rows:
            cells = [latex.escape(r.label)]
            for ours, published in zip(r.ours, r.published):
                cells += [_tex(ours)] + ([_tex(published)] if table.has_published else [])
            rows.append(cells)
        if not table.has_published:
            return "l" + "c" * len(settings), [], ["Method"] + settings, rows, set()
        header_rows = [
            " & " + " & ".join(f"\\multicolumn{{2}}{{c}}{{{s}}}" for s in settings) + " \\\\",
            "".join(f"\\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(settings))),
        ]
        headers = ["Method"] + ["Ours", "Published"] * len(settings)
        return "l" + "cc" * len(settings), header_rows, headers, rows, set()
    rows = []
    for r in table.rows:
        rows.append([latex.escape(r.label)] + [_tex(v) for v in r.ours])
        rows.append(
            ["\\quad{\\footnotesize published}"]
            + [f"{{\\footnotesize {_tex(v)}}}" for v in r.published]
        )
    return "l" + "c" * len(settings), [], ["Method"] + settings, rows, set(range(1, len(rows), 2))


def render_paper_latex(data: dict, summary: dict | None = None) -> str:
    """The paper table as LaTeX: booktabs, plain ASCII, each table a ``table*`` that fits a
    two-column paper's text width; needs ``\\usepackage{booktabs}`` only."""
    table = build(data, summary)
    name = data["table"]
    parts = [f"% Generated by hsmlbench from {name}.json; do not edit by hand.", latex.HEADER]
    if table is None:
        return "\n".join(parts + ["% No cell of this table has run at this budget."]) + "\n"
    align, header_rows, headers, rows, rules = _tex_grid(table)
    body = latex.tabular(headers, rows, align, header_rows=header_rows, rules_after=rules)
    if table.ablation:  # six columns: narrower gaps keep it within the text width
        body = "\\setlength{\\tabcolsep}{4pt}\n" + body
    if table.legend:
        legend = latex.escape(" ".join(table.legend))
        body += f"\n\n\\smallskip\\parbox{{\\linewidth}}{{\\footnotesize {legend}}}"
    parts.append(latex.table_float(latex.escape(table.caption), body, f"tab:{name}", size="small"))
    if table.claims:
        rows = [
            [
                latex.ragged(row[0]),
                latex.ragged(row[1]),
                *map(latex.escape, row[2:4]),
                latex.ragged(row[4]),
            ]
            for row in table.claims
        ]
        rules = set()
        if table.added_from is not None:
            note = "\\multicolumn{5}{l}{\\emph{Added comparisons (not claims of the paper)}}"
            rows.insert(table.added_from, [note])
            rules = {table.added_from - 1}
        parts.append(
            latex.table_float(
                latex.escape(table.claims_caption),
                "\\setlength{\\tabcolsep}{4pt}\n"
                + latex.tabular(
                    [latex.escape(h) for h in CLAIM_HEADERS],
                    rows,
                    "p{4.1cm}p{2.2cm}rlp{3.8cm}",
                    rules_after=rules,
                ),
                f"tab:{name}-claims",
                size="footnotesize",
            )
        )
    return "\n".join(parts) + "\n"


# --- files -----------------------------------------------------------------------------------


def companion_files(data: dict, summary: dict | None = None) -> dict[str, str]:
    """What is written beside ``<table>.md`` for a table with cells: description → path
    relative to the table's folder (the paper table, the LaTeX, the verdict figures)."""
    summary = summary if summary is not None else data.get("summary") or summarize(data)
    if not summary["cells"]:
        return {}
    name = data["table"]
    files = {
        "paper table": f"{name}.paper.md",
        "paper table, LaTeX": f"{name}.paper.tex",
        "this table, LaTeX": f"{name}.tex",
    }
    return files | {label: f"figures/{file}" for label, file in figure_names(name, summary).items()}


def links_line(data: dict, summary: dict | None = None, exclude: str = "") -> str:
    """One markdown line linking a table's companion files but ``exclude`` (empty when there
    are none)."""
    files = {k: v for k, v in companion_files(data, summary).items() if v != exclude}
    if not files:
        return ""
    return "Also: " + ", ".join(f"[{label}]({path})" for label, path in files.items()) + "."


def write_paper_files(json_path: Path) -> list[Path]:
    """``<table>.paper.md``, ``.paper.tex``, ``.tex`` and the verdict figures, all rendered
    from the table's JSON file as written (nothing else is read). Returns the files written."""
    json_path = Path(json_path)
    data = load_table(json_path)
    summary = data.get("summary") or summarize(data)
    if not summary["cells"]:
        return []
    folder, name = json_path.parent, data["table"]
    links = links_line(data, summary, f"{name}.paper.md")
    figures = {
        label.removesuffix(" (PNG)"): path
        for label, path in companion_files(data, summary).items()
        if path.endswith(".png")
    }
    written = []
    for path, text in (
        (folder / f"{name}.paper.md", render_paper_markdown(data, summary, links, figures)),
        (folder / f"{name}.paper.tex", render_paper_latex(data, summary)),
        (folder / f"{name}.tex", render_latex(data, summary)),
    ):
        write_text(path, text)
        written.append(path)
    return written + write_verdict_figures(data, summary, folder)
