"""The ablations table: variants trained through the grid, baselines read from T1's runs,
MUMOMAML scored after one step from the same runs, effects against the right reference, and
FINDINGS.md rendered from the JSON."""

import json

import numpy as np
import pytest
import torch

from hsmlbench.cli import main


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """T1's MUMOMAML and HSML and two ablation rows, two seeds, smoke budget."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ablations")
    common = ["--settings", "5-shot", "--budget", "smoke", "--seeds", "2", "--quiet"]
    common += ["--out", str(root / "out"), "--work-dir", str(root / "w"), "--jobs", "1"]
    assert main(["reproduce", "--tables", "T1", "--methods", "mumomaml", "hsml", *common]) == 0
    variants = ["mumomaml-noclip", "hsml-torch-init"]
    assert main(["reproduce", "--tables", "ablations", "--methods", *variants, *common]) == 0
    torch.set_num_threads(before)
    return root / "out"


def _raw(out, table, name):
    return json.loads((out / "runs" / table / f"{name}-smoke.json").read_text())


def _seed_averaged(out, table, method, key="per_task", step=None):
    raws = [_raw(out, table, f"{table}-{method}-5-shot-seed{s}") for s in (0, 1)]
    values = [r["per_task_by_step"][step] if step else r[key] for r in raws]
    return np.mean(values, axis=0)


def test_rows_come_from_the_variants_t1_and_one_step_scoring(out):
    data = json.loads((out / "ablations.json").read_text())
    methods = {(r["method"], r["seed"]) for r in data["rows"]}
    for method in ("mumomaml", "hsml", "mumomaml-noclip", "hsml-torch-init", "mumomaml-step1"):
        assert {(method, 0), (method, 1)} <= methods
    step1 = [r for r in data["rows"] if r["method"] == "mumomaml-step1" and r["seed"] == 0][0]
    raw = _raw(out, "T1", "T1-mumomaml-5-shot-seed0")
    assert step1["per_task"] == raw["per_task_by_step"]["1"]
    assert raw["per_task_by_step"]["0"] != raw["per_task_by_step"]["1"]


def test_each_effect_is_against_the_row_it_varies_on_the_same_tasks(out):
    from hsmlbench.report.analysis import summarize

    effects = {
        e["change"]: e
        for e in summarize(json.loads((out / "ablations.json").read_text()))["effects"]
    }
    assert effects["mumomaml-noclip"]["reference"] == "mumomaml"
    assert effects["hsml-torch-init"]["reference"] == "hsml"
    assert effects["mumomaml-step1"]["reference"] == "mumomaml"
    expected = (
        _seed_averaged(out, "ablations", "mumomaml-noclip") - _seed_averaged(out, "T1", "mumomaml")
    ).mean()
    assert effects["mumomaml-noclip"]["mean_difference"] == pytest.approx(expected, rel=1e-12)
    step1 = _seed_averaged(out, "T1", "mumomaml", step="1") - _seed_averaged(out, "T1", "mumomaml")
    assert effects["mumomaml-step1"]["mean_difference"] == pytest.approx(step1.mean(), rel=1e-12)
    for effect in effects.values():
        low, high = effect["crossed_interval"]
        assert low <= effect["mean_difference"] <= high


def test_findings_page_is_rendered_with_numbers(out):
    text = (out / "FINDINGS.md").read_text()
    assert "NOT the paper budget" in text
    assert "`mumomaml-noclip` against MUMOMAML: MSE" in text
    assert "`hsml-clipped`: not run yet" in text
    assert "Ours after 1 step:" in text and "HSML − `mumomaml-step1`" in text
    md = (out / "ablations.md").read_text()
    assert "## Effect of each change" in md and "Baseline rows (MAML, MUMOMAML, HSML)" in md


def test_findings_say_which_ablation_seeds_diverged(out, tmp_path):
    """A row with a diverged seed says so beside its effect; a row whose every seed diverged
    says that instead of "not run yet"."""
    from hsmlbench.report.findings import render_findings

    for name in ("T1.json", "T2.json"):
        if (out / name).exists():
            (tmp_path / name).write_text((out / name).read_text())
    data = json.loads((out / "ablations.json").read_text())
    data["diverged"] = [
        {
            "method": "hsml-torch-init",
            "setting": "5-shot",
            "seed": 2,
            "diverged_at_iteration": 41,
            "iterations": 60,
        },
        {
            "method": "hsml-clipped",
            "setting": "5-shot",
            "seed": 0,
            "diverged_at_iteration": 7,
            "iterations": 60,
        },
        {
            "method": "hsml-clipped",
            "setting": "5-shot",
            "seed": 1,
            "diverged_at_iteration": 9,
            "iterations": 60,
        },
    ]
    (tmp_path / "ablations.json").write_text(json.dumps(data))
    text = render_findings(tmp_path)
    line = next(x for x in text.splitlines() if x.startswith("- `hsml-torch-init` against"))
    assert line.endswith(
        "(seed 2 diverged at iteration 41 of 60; not in the mean: the effect is over the seeds "
        "that finished)"
    )
    assert (
        "- `hsml-clipped`: every seed run diverged (seed 0 diverged at iteration 7 of 60; seed 1 "
        "diverged at iteration 9 of 60); no effect to measure" in text
    )
    assert "`hsml-clipped`: not run yet" not in text
