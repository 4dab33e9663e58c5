"""FINDINGS.md reads T1-extended: each added method's cells against their published values
(or says every seed diverged, or that a setting has not run), with the diverged seeds named,
and how it stands against each paper method by the added comparisons' verdicts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from hsmlbench.report.findings import render_findings

SETTINGS = ("5-shot", "10-shot")
SEEDS = (0, 1, 2)
TASKS = 60
CENTRES = {"maml": 2.0, "mumomaml": 0.7, "hsml": 0.9}


def _errors(rng: random.Random, centre: float) -> list[float]:
    return [max(0.01, centre + rng.gauss(0, 0.2)) for _ in range(TASKS)]


def _row(method, setting, seed, per_task):
    return {"method": method, "setting": setting, "seed": seed, "per_task": per_task}


@pytest.fixture(scope="module")
def tables():
    """T1 with the three paper methods, and T1-extended adding two made-up methods:
    "lowest" below every paper method on every task, with seed 2 of 10-shot diverged;
    "lost", whose 5-shot seeds all diverged and whose 10-shot never ran."""
    rng = random.Random(0)
    rows = [
        _row(m, s, seed, _errors(rng, c))
        for m, c in CENTRES.items()
        for s in SETTINGS
        for seed in SEEDS
    ]
    lowest = [
        _row("lowest", r["setting"], r["seed"], [v * 0.2 for v in r["per_task"]])
        for r in rows
        if r["method"] == "mumomaml" and not (r["setting"] == "10-shot" and r["seed"] == 2)
    ]
    common = {
        "title": "Multimodal regression",
        "metric": "MSE",
        "lower_is_better": True,
        "budget": {"name": "paper", "iterations": 70000, "n_test_tasks": TASKS, "description": ""},
        "environment": {},
        "notes": [],
    }
    t1 = common | {"table": "T1", "rows": rows, "diverged": []}
    diverged = [
        {
            "method": "lowest",
            "setting": "10-shot",
            "seed": 2,
            "diverged_at_iteration": 512,
            "iterations": 70000,
        }
    ] + [
        {
            "method": "lost",
            "setting": "5-shot",
            "seed": s,
            "diverged_at_iteration": 100 + s,
            "iterations": 70000,
        }
        for s in SEEDS
    ]
    extended = common | {
        "table": "T1-extended",
        "base_table": "T1",
        "rows": rows + lowest,
        "diverged": diverged,
        "extra_methods": {
            "lowest": {
                "label": "Lowest",
                "baselines": list(CENTRES),
                "published": {"5-shot": {"mean": 0.5, "ci95": 0.05, "source": "its paper"}},
            },
            "lost": {"label": "Lost", "baselines": list(CENTRES)},
        },
    }
    return t1, extended, lowest


def test_findings_read_each_added_methods_cells_and_standing(tables, tmp_path):
    t1, extended, lowest = tables
    (tmp_path / "T1.json").write_text(json.dumps(t1))
    (tmp_path / "T1-extended.json").write_text(json.dumps(extended))
    text = render_findings(tmp_path)
    assert "`T1-extended.json`" in text.splitlines()[2]
    section = text[text.index("## The paper's other regression baselines") :]
    lines = section.splitlines()

    for setting, seeds in (("5-shot", 3), ("10-shot", 2)):
        # the mean over seeds of each seed's mean, computed here from the rows
        mean = np.mean([np.mean(r["per_task"]) for r in lowest if r["setting"] == setting])
        line = next(
            x for x in lines if x.startswith(f"- {setting}: ours {mean:.3f} over {seeds} seeds")
        )
        assert "beats MAML (" in line and ", MUMOMAML (" in line and ", HSML (" in line
        assert "trails" not in line and "no clear difference" not in line
        if setting == "5-shot":
            assert "against published 0.500 ± 0.050" in line
        else:
            assert "(no published value)" in line
            assert "seed 2 diverged at iteration 512 of 70,000, not in the mean" in line
    lost = section[section.index("### Lost") :]
    assert (
        "- 5-shot: every seed run diverged (seed 0 diverged at iteration 100 of 70,000; seed 1 "
        "diverged at iteration 101 of 70,000; seed 2 diverged at iteration 102 of 70,000); no result"
        in lost
    )
    assert "- 10-shot: not run yet" in lost


def test_an_added_method_that_trails_is_said_to_trail(tables, tmp_path):
    t1, extended, _ = tables
    highest = [
        r | {"method": "lowest", "per_task": [v * 3 for v in r["per_task"]]}
        for r in t1["rows"]
        if r["method"] == "maml"
    ]
    extended = extended | {"rows": t1["rows"] + highest, "diverged": []}
    (tmp_path / "T1.json").write_text(json.dumps(t1))
    (tmp_path / "T1-extended.json").write_text(json.dumps(extended))
    section = render_findings(tmp_path).split("### Lowest")[1].split("###")[0]
    for setting in SETTINGS:
        line = next(x for x in section.splitlines() if x.startswith(f"- {setting}:"))
        assert "trails MAML (+" in line and "beats" not in line


def test_without_added_methods_there_is_no_section(tables, tmp_path):
    t1, _, _ = tables
    (tmp_path / "T1.json").write_text(json.dumps(t1))
    assert "other regression baselines" not in render_findings(tmp_path)


def test_a_single_seed_is_said_to_rest_on_the_test_tasks_alone(tables, tmp_path):
    t1, extended, _ = tables
    single = [
        r | {"method": "lowest", "per_task": [v * 3 for v in r["per_task"]]}
        for r in t1["rows"]
        if r["method"] == "maml" and r["seed"] == 0
    ]
    extended = extended | {"rows": t1["rows"] + single, "diverged": []}
    (tmp_path / "T1.json").write_text(json.dumps(t1))
    (tmp_path / "T1-extended.json").write_text(json.dumps(extended))
    section = render_findings(tmp_path).split("### Lowest")[1].split("###")[0]
    line = next(x for x in section.splitlines() if x.startswith("- 5-shot:"))
    mean = np.mean(single[0]["per_task"])
    assert line.startswith(f"- 5-shot: ours {mean:.3f} over 1 seed (no interval over seeds)")
    assert "trails MAML (+" in line and "one seed: on the test tasks only)" in line
    assert "seeds × tasks" not in line
