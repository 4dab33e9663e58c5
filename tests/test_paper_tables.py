"""The paper tables: the paper's layout (methods as rows, settings as columns), every number one
that the table's JSON holds, the marks where ours disagrees with the published value and where
a claim is contradicted, the caption's budget, seeds and code version; the files written beside
a table, the figures, and `hsmlbench report --paper`."""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from hsmlbench.report.analysis import summarize
from hsmlbench.report.paper_reference import CLAIMS, PUBLISHED
from hsmlbench.report.paper_tables import (
    build,
    links_line,
    render_paper_latex,
    render_paper_markdown,
    write_paper_files,
)
from hsmlbench.report.tables import load_table, render_markdown

DATA = Path(__file__).parent / "data"
RESULTS = Path(__file__).resolve().parents[1] / "results"


def fixture() -> dict:
    data = load_table(DATA / "T1_fixture.json")
    return data | {"summary": summarize(data)}


def with_summary(data: dict) -> dict:
    data = {k: v for k, v in data.items() if k != "summary"}
    return data | {"summary": summarize(data)}


def image_table(table: str, seeds: int = 2, tasks: int = 40) -> dict:
    """A T3/T4 JSON with made-up accuracies near the published ones: four datasets."""
    rng = random.Random(0)
    cells = sorted({(m, c.setting) for c in CLAIMS[table] for m in (c.better, c.worse)})
    mean = {
        (m, s): PUBLISHED[p].mean if (p := (table, m, s)) in PUBLISHED else 50.0 for m, s in cells
    }
    rows = [
        {
            "method": m,
            "setting": s,
            "seed": seed,
            "per_task": [mean[m, s] + rng.gauss(0, 8) for _ in range(tasks)],
        }
        for m, s in cells
        for seed in range(seeds)
    ]
    return with_summary(
        {
            "table": table,
            "title": "Few-shot image classification, accuracy (%) ± 95% CI",
            "metric": "accuracy (%)",
            "lower_is_better": False,
            "budget": {"name": "cpu", "iterations": 100, "n_test_tasks": tasks},
            "rows": rows,
        }
    )


def md_table_rows(markdown: str) -> list[list[str]]:
    """The body rows of every markdown table, as cells."""
    rows, body = [], False
    for line in markdown.splitlines():
        if not line.startswith("|"):
            body = False
        elif line.startswith("|--"):
            body = True
        elif body:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def numbers_held(data: dict, digits: int) -> set[str]:
    """Every number of the JSON's analysis, rounded as a table prints it."""
    held = set()

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            for x in (value, -value):
                held.update({f"{x:.{digits}f}", f"{x:+.{digits}f}"})
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data["summary"])
    return held


TABLES = {
    "fixture": fixture,
    "T3": lambda: image_table("T3"),
    "T4": lambda: image_table("T4"),
    "T3-synthetic": lambda: image_table("T3-synthetic"),
    "T4-synthetic": lambda: image_table("T4-synthetic"),
    **{
        p.stem: (lambda p=p: load_table(p))
        for p in sorted(RESULTS.glob("*.json"))
        if p.name != "VERIFY.json"
    },
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_number_in_a_paper_table_is_one_the_json_holds(name):
    data = TABLES[name]()
    if not data["summary"]["cells"]:
        assert render_paper_markdown(data).endswith(
            "No cell of this table has run at this budget.\n"
        )
        return
    digits = 3 if data.get("lower_is_better", True) else 2
    held = numbers_held(data, digits)
    markdown = render_paper_markdown(data)
    tex = render_paper_latex(data)
    found = [
        n for row in md_table_rows(markdown) for c in row for n in re.findall(r"[+-]?\d+\.\d+", c)
    ]
    tex_rows = [line for line in tex.splitlines() if " & " in line and "multicolumn" not in line]
    found_tex = [
        n.replace("$-$", "-")
        for line in tex_rows
        for n in re.findall(r"(?:\$-\$|[+-])?\d+\.\d+", line)
    ]
    assert found and found_tex
    assert not [n for n in found + found_tex if n not in held and n.lstrip("+-") not in held]


def test_the_papers_layout_methods_as_rows_settings_as_columns():
    data = fixture()
    markdown = render_paper_markdown(data)
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "method",
        "5-shot: ours",
        "5-shot: published",
    ]
    cells = {c["method"]: c for c in data["summary"]["cells"]}
    rows = {
        row[0]: row for row in md_table_rows(markdown) if row[0] in ("MAML", "MUMOMAML", "HSML")
    }
    assert list(rows) == ["MAML", "HSML", "MUMOMAML"]  # the JSON's order
    for label, method in (("MAML", "maml"), ("HSML", "hsml"), ("MUMOMAML", "mumomaml")):
        cell = cells[method]
        assert f"{cell['mean']:.3f} ± {cell['combined_ci95']:.3f}" in rows[label][1]
        assert rows[label][2] == f"{cell['published']:.3f} ± {cell['published_ci95']:.3f}"


def test_the_caption_names_the_budget_seeds_and_code_version():
    data = fixture()
    for row in data["rows"]:
        row["code_version"] = "0.1.0+abc"
    table = build(data)
    assert "Budget smoke: 60 meta-training iterations, 6 test tasks (NOT the paper budget)" in (
        table.caption
    )
    assert "2 seeds (0, 1)" in table.caption and "Code version 0.1.0+abc." in table.caption
    assert "Budget smoke" in render_paper_latex(data)


def test_marks_for_cells_that_disagree_and_claims_that_are_contradicted():
    data = fixture()
    for row in data["rows"]:  # HSML far worse: its claims reverse, its cell disagrees
        if row["method"] == "hsml":
            row["per_task"] = [v + 5 for v in row["per_task"]]
    data = with_summary(data)
    cells = {c["method"]: c for c in data["summary"]["cells"]}
    assert cells["hsml"]["verdict"] == "ours higher"
    markdown = render_paper_markdown(data)
    rows = {row[0]: row for row in md_table_rows(markdown)}
    assert rows["HSML"][1].endswith("↑ ‡")
    for method, label in (("maml", "MAML"), ("mumomaml", "MUMOMAML")):
        mark = {"ours higher": "↑", "ours lower": "↓"}.get(cells[method]["verdict"], "")
        assert ("↑" in rows[label][1] or "↓" in rows[label][1]) == bool(mark)
        assert "‡" not in rows[label][1]
    assert "↑ / ↓: ours significantly higher / lower" in markdown and "‡: the paper" in markdown
    claims = [r for r in md_table_rows(markdown) if r[0] == "HSML better than MAML"]
    assert claims[0][-1].startswith("contradicted")
    tex = render_paper_latex(data)
    assert "$^{\\uparrow\\ddagger}$" in tex


def test_no_marks_and_no_legend_entries_where_nothing_disagrees():
    data = load_table(RESULTS / "T2.json")
    markdown = render_paper_markdown(data)
    assert not any(mark in markdown for mark in ("↑", "↓", "‡"))
    assert "Bold: the lowest of our means in the column." in markdown


def test_four_datasets_put_the_published_value_in_a_second_row():
    data = image_table("T3")
    markdown = render_paper_markdown(data)
    rows = {row[0]: row for row in md_table_rows(markdown)}
    assert "HSML (ours)" in rows and "HSML (published)" in rows
    settings = build(data).settings
    assert rows["HSML (published)"][1:] == [
        f"{PUBLISHED['T3', 'hsml', s].mean:.2f} ± {PUBLISHED['T3', 'hsml', s].ci95:.2f}"
        for s in settings
    ]
    assert "Bold: the highest of our means" in markdown  # accuracy: higher is better
    assert "\\quad{\\footnotesize published}" in render_paper_latex(data)
    t4 = build(image_table("T4"))
    assert "the paper's mean (it gives no interval)" in t4.caption


def test_a_plugins_declared_published_value_is_marked_secondary():
    data = fixture()
    hsml = [r for r in data["rows"] if r["method"] == "hsml"]
    data["rows"] += [
        r | {"method": "mine", "per_task": [v + 0.1 * (i % 3) for i, v in enumerate(r["per_task"])]}
        for r in hsml
    ]
    data |= {
        "table": "T1-extended",
        "base_table": "T1",
        "extra_methods": {
            "mine": {
                "label": "Mine",
                "baselines": ["maml", "mumomaml", "hsml"],
                "published": {"5-shot": {"mean": 1.0, "ci95": 0.1, "source": "its paper"}},
            }
        },
    }
    data = with_summary(data)
    markdown = render_paper_markdown(data)
    rows = {row[0]: row for row in md_table_rows(markdown)}
    assert rows["Mine"][2] == "1.000 ± 0.100 (s)"
    assert "(s): a published value not from the paper's poster" in markdown
    assert "Added comparisons (not claims of the paper):" in markdown
    assert "Mine better than HSML" in rows
    tex = render_paper_latex(data)
    assert "1.000 $\\pm$ 0.100$^{s}$" in tex and "Added comparisons" in tex


def test_the_ablations_give_each_change_its_effect_in_its_row():
    data = fixture()
    hsml = [r for r in data["rows"] if r["method"] == "hsml"]
    data["rows"] += [
        r
        | {
            "method": "hsml-changed",
            "per_task": [v + 0.4 + 0.1 * (i % 3) for i, v in enumerate(r["per_task"])],
        }
        for r in hsml
    ]
    data = with_summary(data | {"table": "ablations", "effects": {"hsml-changed": "hsml"}})
    markdown = render_paper_markdown(data)
    rows = {row[0]: row for row in md_table_rows(markdown)}
    assert rows["hsml-changed"][2:5] == ["HSML", "+0.500", rows["hsml-changed"][4]]
    assert rows["HSML"][2:] == ["—"] * 4
    assert "Bold" not in markdown  # no "best" among variants


def test_the_files_beside_a_table_and_their_links(tmp_path):
    data = fixture()
    json_path = tmp_path / "T1.json"
    json_path.write_text(json.dumps(data))
    (tmp_path / "T1.md").write_text(render_markdown(data, data["summary"], links_line(data)))
    written = write_paper_files(json_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == [
        "T1.paper.md",
        "T1.paper.tex",
        "T1.tex",
        "figures/T1_cells.pdf",
        "figures/T1_cells.png",
        "figures/T1_claims.pdf",
        "figures/T1_claims.png",
    ]
    for page in ("T1.md", "T1.paper.md"):  # every relative link resolves
        text = (tmp_path / page).read_text()
        links = re.findall(r"\]\(([^)]+)\)", text)
        assert "figures/T1_cells.png" in links and "figures/T1_claims.pdf" in links
        assert all((tmp_path / link).is_file() for link in links), links
    assert "![every cell](figures/T1_cells.png)" in (tmp_path / "T1.paper.md").read_text()
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(data))  # not rewritten
    before = {p: p.read_bytes() for p in written}
    write_paper_files(json_path)  # the same data writes the same bytes (PDFs undated)
    assert {p: p.read_bytes() for p in written} == before


def test_a_table_without_cells_gets_no_paper_files(tmp_path):
    data = with_summary({"table": "T3", "budget": {"name": "paper"}, "rows": []})
    json_path = tmp_path / "T3.json"
    json_path.write_text(json.dumps(data))
    assert write_paper_files(json_path) == [] and links_line(data) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T3.json"]


def test_report_writes_the_paper_table_from_a_json(tmp_path):
    from hsmlbench.cli import main

    shutil.copy(DATA / "T1_fixture.json", tmp_path / "T1.json")
    assert main(["report", str(tmp_path / "T1.json"), "--paper"]) == 0
    data = load_table(tmp_path / "T1.json")
    assert (tmp_path / "T1.paper.md").read_text() == render_paper_markdown(data)
    assert main(["report", str(tmp_path / "T1.json"), "--paper", "--format", "latex"]) == 0
    assert (tmp_path / "T1.paper.tex").read_text() == render_paper_latex(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T1.json", "T1.paper.md", "T1.paper.tex"]


def test_the_paper_table_does_not_change_the_json_it_reads():
    data = load_table(RESULTS / "T1.json")
    before = copy.deepcopy(data)
    render_paper_markdown(data)
    render_paper_latex(data)
    assert data == before


def test_the_cell_figure_names_a_cell_with_fewer_seeds():
    from hsmlbench.report.verdict_figures import cell_label

    labels = {"mtnet": "MT-Net"}
    assert cell_label({"method": "mtnet", "seeds": [1]}, labels, 5) == "MT-Net (1 seed)"
    assert cell_label({"method": "mtnet", "seeds": [0, 2, 4]}, labels, 5) == "MT-Net (3 seeds)"
    assert cell_label({"method": "mtnet", "seeds": [0, 1, 2, 3, 4]}, labels, 5) == "MT-Net"
    assert cell_label({"method": "new", "seeds": [0]}, labels, 1) == "new"
