import json
from pathlib import Path

import pytest

from hsmlbench.atomic import write_json
from hsmlbench.report.analysis import summarize
from hsmlbench.report.tables import load_table, render_markdown

DATA = Path(__file__).parent / "data"


def test_fixture_renders_to_the_expected_markdown():
    data = load_table(DATA / "T1_fixture.json")
    assert render_markdown(data) == (DATA / "T1_fixture.md").read_text()


def test_summary_pools_seeds_on_the_same_tasks():
    data = load_table(DATA / "T1_fixture.json")
    cells = {c["method"]: c for c in summarize(data)["cells"]}
    maml_rows = [r["per_task"] for r in data["rows"] if r["method"] == "maml"]
    pooled = [(a + b) / 2 for a, b in zip(*maml_rows)]
    assert cells["maml"]["mean"] == pytest.approx(sum(pooled) / len(pooled))
    assert cells["maml"]["seeds"] == [0, 1]
    assert cells["maml"]["published"] is not None


def test_claims_reversed_in_our_run_are_reported_as_such():
    data = load_table(DATA / "T1_fixture.json")
    for row in data["rows"]:  # make HSML the worst method
        if row["method"] == "hsml":
            row["per_task"] = [v + 5 for v in row["per_task"]]
    verdicts = {c["claim"]: c["verdict"] for c in summarize(data)["comparisons"]}
    assert (
        verdicts["hsml better than maml (5-shot)"]
        == "contradicted: significantly reversed in our run"
    )
    assert verdicts["mumomaml better than maml (5-shot)"] == "supported"


def test_a_small_reversal_is_not_called_a_contradiction():
    data = load_table(DATA / "T1_fixture.json")
    hsml = {r["seed"]: r for r in data["rows"] if r["method"] == "hsml"}
    for row in data["rows"]:  # MUMOMAML = HSML plus a tiny, mixed-sign perturbation
        if row["method"] == "mumomaml":
            row["per_task"] = [
                v + d
                for v, d in zip(
                    hsml[row["seed"]]["per_task"], [-0.02, 0.01, -0.01, 0.0, -0.01, 0.02]
                )
            ]
    # mean(mumomaml) − mean(hsml) < 0: the claim "hsml better" goes the other way, weakly
    verdicts = {c["claim"]: c["verdict"] for c in summarize(data)["comparisons"]}
    assert (
        verdicts["hsml better than mumomaml (5-shot)"]
        == "not supported: reversed in our run, not significant"
    )


def test_malformed_results_file_names_the_problem(tmp_path):
    bad = tmp_path / "T1.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_table(bad)
    write_json(bad, {"table": "T1"})
    with pytest.raises(ValueError, match="no 'rows' field"):
        load_table(bad)
    with pytest.raises(FileNotFoundError, match="hsmlbench reproduce"):
        load_table(tmp_path / "missing.json")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json(target, {"b": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_cell_names_the_meta_step_of_its_seeds_and_never_hides_a_mix():
    from hsmlbench.report.analysis import meta_step_label

    assert meta_step_label(["fast, compiled", "fast, eager (HSMLBENCH_COMPILE=0)"]) == "fast"
    assert meta_step_label(["autograd", "autograd"]) == "autograd"
    assert meta_step_label(["fast, compiled", "autograd"]) == "mixed: autograd ×1, fast ×1"


def test_latex_renders_the_same_tables_for_a_paper(tmp_path):
    from hsmlbench.cli import main
    from hsmlbench.report.analysis import summarize
    from hsmlbench.report.latex import escape
    from hsmlbench.report.tables import cell_table, claims_table, render_latex

    data = load_table(DATA / "T1_fixture.json")
    tex = render_latex(data)
    # two tables (cells, claims), their columns split into groups that fit a page's width
    assert tex.count("\\begin{table*}") == 2
    assert tex.count("\\begin{tabular}") == tex.count("\\toprule") > 2
    assert tex.isascii() and "$\\pm$" in tex
    assert "95\\% CI" in tex  # the caption's % is escaped
    summary = summarize(data)
    for rows in (cell_table(data, summary)[1], claims_table(summary)[1]):
        for row in rows:  # every cell of the markdown tables is in the LaTeX ones
            assert all(escape(str(cell)) in tex for cell in row)
    path = tmp_path / "T1.json"
    path.write_text((DATA / "T1_fixture.json").read_text())
    assert main(["report", str(path), "--format", "latex"]) == 0
    assert (tmp_path / "T1.tex").read_text() == tex
