"""The LaTeX a paper pastes compiles with pdflatex and fits: every table* of every generated
file (the paper tables and the full analysis tables of the committed results, rendered from
their JSON by today's code, and the committed .tex files) is compiled inside a minimal
two-column document at ICML's text width, 6.75 in = 487.8 pt, with only the packages the files
name. A table wider than the text width by more than TOLERANCE_PT fails, naming the file and
how much too wide it is.

Without pdflatex the compile tests skip with the reason; CI installs it (`.ci/run`: Debian's
texlive-latex-base and texlive-latex-recommended). The checks of the source text (plain ASCII,
no nested math) need no TeX.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hsmlbench.report import latex
from hsmlbench.report.paper_tables import render_paper_latex
from hsmlbench.report.tables import load_table, render_latex

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DATA = Path(__file__).parent / "data"
PDFLATEX = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(
    PDFLATEX is None,
    reason="pdflatex not installed (Debian: apt-get install texlive-latex-base "
    "texlive-latex-recommended, as .ci/run does in CI)",
)

# An overfull box up to this much is rounding, not a table that falls off the page (TeX itself
# reports from \hfuzz = 0.1 pt).
TOLERANCE_PT = 1.0

# A minimal two-column paper at ICML's geometry, with exactly the packages the files name
# (latex.PACKAGES); each tabular's natural width is written to the log as TABULAR-WIDTH.
DOCUMENT = r"""\documentclass[10pt,twocolumn]{article}
\usepackage[letterpaper,textwidth=%(width)spt,textheight=9in,columnsep=0.25in]{geometry}
%(packages)s
\makeatletter
\newsavebox\hsmlbench@box
\let\hsmlbench@tabular\tabular \let\hsmlbench@endtabular\endtabular
\renewenvironment{tabular}{\begin{lrbox}{\hsmlbench@box}\hsmlbench@tabular}%%
  {\hsmlbench@endtabular\end{lrbox}\typeout{TABULAR-WIDTH=\the\wd\hsmlbench@box}%%
   \usebox{\hsmlbench@box}}
\makeatother
\begin{document}
\input{table.tex}
\end{document}
"""


def compile_table(tex: str, folder: Path) -> dict:
    """``tex`` compiled by pdflatex inside DOCUMENT: its errors, overfull boxes (pt too wide)
    and each tabular's natural width (pt)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.tex").write_text(tex)
    packages = "\n".join(f"\\usepackage{{{p}}}" for p in latex.PACKAGES)
    (folder / "doc.tex").write_text(DOCUMENT % {"width": latex.TEXT_WIDTH_PT, "packages": packages})
    run = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (folder / "doc.log").read_text(errors="replace")
    return {
        "returncode": run.returncode,
        "errors": [line for line in log.splitlines() if line.startswith("!")],
        "overfull": [
            (float(width), line)
            for line in log.splitlines()
            for width in re.findall(r"^Overfull \\hbox \(([\d.]+)pt too wide\)", line)
        ],
        "widths": [float(w[:-2]) for w in re.findall(r"TABULAR-WIDTH=([\d.]+pt)", log)],
        # a glyph outside the Type 1 fonts: a bitmap font made by mktexpk (log lines wrap)
        "bitmap_fonts": "/fonts/pk/" in log.replace("\n", "") or "mktexpk" in run.stdout,
    }


def problems(result: dict, name: str) -> list[str]:
    """What makes a compiled table unusable in a paper, one line each."""
    found = [f"{name}: pdflatex error {line}" for line in result["errors"]]
    if result["returncode"] and not found:
        found.append(f"{name}: pdflatex exited with {result['returncode']}")
    found += [
        f"{name}: {line} (tolerance {TOLERANCE_PT} pt at text width {latex.TEXT_WIDTH_PT} pt)"
        for width, line in result["overfull"]
        if width > TOLERANCE_PT
    ]
    if result["bitmap_fonts"]:
        found.append(f"{name}: needed a bitmap font (a glyph outside LaTeX's default fonts)")
    return found


def generated() -> dict[str, str]:
    """Every .tex today's code writes for the committed results, by file name."""
    files = {}
    for path in sorted(p for p in RESULTS.glob("*.json") if p.name != "VERIFY.json"):
        data = load_table(path)
        summary = data.get("summary")
        if not summary or not summary["cells"]:
            continue  # no cell has run (T3, T4 today): no table to set
        files[f"{path.stem}.tex"] = render_latex(data, summary)
        files[f"{path.stem}.paper.tex"] = render_paper_latex(data)
    return files


GENERATED = generated()
COMMITTED = sorted(p.name for p in RESULTS.glob("*.tex"))


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_latex_is_plain_ascii_without_nested_math(name):
    tex = GENERATED[name]
    assert tex.isascii(), [c for c in tex if not c.isascii()][:5]
    assert "\\ensuremath{$" not in tex
    for line in tex.splitlines():
        if not line.startswith("%"):
            assert line.replace("\\$", "").count("$") % 2 == 0, line


@needs_pdflatex
@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_latex_compiles_and_fits_the_text_width(name, tmp_path):
    result = compile_table(GENERATED[name], tmp_path)
    found = problems(result, name)
    assert not found, "\n".join(found)
    assert result["widths"] and max(result["widths"]) <= latex.TEXT_WIDTH_PT + TOLERANCE_PT


@needs_pdflatex
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_latex_compiles_and_fits_the_text_width(name, tmp_path):
    found = problems(compile_table((RESULTS / name).read_text(), tmp_path), name)
    assert not found, "\n".join(found)


@needs_pdflatex
def test_the_check_catches_a_table_that_is_too_wide(tmp_path):
    """The test above can fail: 14 wide columns overflow, by about how much they should."""
    cells = " & ".join(["0.123 $\\pm$ 0.045"] * 14)
    tex = (
        "\\begin{table*}\\centering\\begin{tabular}{"
        + "l" * 14
        + "}\\toprule\n"
        + cells
        + " \\\\\n\\bottomrule\\end{tabular}\\end{table*}\n"
    )
    result = compile_table(tex, tmp_path)
    found = problems(result, "wide.tex")
    assert len(found) == 1 and "too wide" in found[0]
    (width,) = result["widths"]
    assert result["overfull"][0][0] == pytest.approx(width - latex.TEXT_WIDTH_PT, abs=0.5)


@needs_pdflatex
def test_the_fixture_compiles_in_both_layouts(tmp_path):
    data = load_table(DATA / "T1_fixture.json")
    for name, tex in (("analysis", render_latex(data)), ("paper", render_paper_latex(data))):
        assert not problems(compile_table(tex, tmp_path / name), name)


def image_table(table: str, seeds: int = 2, tasks: int = 40) -> dict:
    """An image table's JSON with made-up accuracies (near the published ones where there are
    any; no image run has been committed yet): four datasets, so the published values take a
    second row; the synthetic set's long dataset names."""
    import random

    from hsmlbench.report.analysis import summarize
    from hsmlbench.report.paper_reference import CLAIMS, PUBLISHED

    rng = random.Random(0)
    cells = sorted({(m, c.setting) for c in CLAIMS[table] for m in (c.better, c.worse)})
    mean = {
        (m, s): PUBLISHED[p].mean if (p := (table, m, s)) in PUBLISHED else 50.0 for m, s in cells
    }
    rows = [
        {
            "method": method,
            "setting": setting,
            "seed": seed,
            "per_task": [mean[method, setting] + rng.gauss(0, 8) for _ in range(tasks)],
            "code_version": "0.1.0+test",
        }
        for method, setting in cells
        for seed in range(seeds)
    ]
    data = {
        "table": table,
        "title": "Few-shot image classification, 5-way 1-shot accuracy (%) after 10 steps ± 95% CI",
        "metric": "accuracy (%)",
        "lower_is_better": False,
        "budget": {"name": "cpu", "iterations": 100, "n_test_tasks": tasks, "description": ""},
        "rows": rows,
    }
    assert CLAIMS[table]
    return data | {"summary": summarize(data)}


@needs_pdflatex
@pytest.mark.parametrize("table", ["T3", "T4", "T3-synthetic", "T4-synthetic"])
def test_the_image_tables_compile_and_fit(table, tmp_path):
    """Four datasets: the published values in a second row (T3, T4) or long names (synthetic)."""
    data = image_table(table)
    for name, tex in (("analysis", render_latex(data)), ("paper", render_paper_latex(data))):
        found = problems(compile_table(tex, tmp_path / name), f"{table} {name}")
        assert not found, "\n".join(found)
