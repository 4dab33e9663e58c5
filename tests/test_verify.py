"""``hsmlbench verify``: a reproduced smoke table verifies bit for bit; an altered committed
number is found, with the verdict it would change; samples are reproducible; the results
folder it checks is never written (docs/VERIFYING.md)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hsmlbench.cli import EXIT_UNVERIFIED, main
from hsmlbench.results.schema import checksum
from hsmlbench.run import verify as rv


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """T1 5-shot at the smoke budget, MAML and HSML, two seeds: the 'committed' results."""
    root = tmp_path_factory.mktemp("verify")
    argv = ["reproduce", "--tables", "T1", "--settings", "5-shot", "--methods", "maml", "hsml"]
    argv += ["--budget", "smoke", "--seeds", "2", "--jobs", "1", "--quiet"]
    assert main([*argv, "--out", str(root / "results")]) == 0
    return root


def _verify(results: Path, work: Path, *extra: str) -> int:
    return main(["verify", str(results), "--work", str(work), "--jobs", "1", "--quiet", *extra])


def test_a_reproduced_smoke_table_verifies_bit_identical(smoke_results, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    before = _digests(results)
    assert _verify(results, tmp_path / "work", "--strict", "--report-dir", str(tmp_path)) == 0
    assert _digests(results) == before  # nothing in the checked folder written or moved
    report = json.loads((tmp_path / "VERIFY.json").read_text())
    assert [r["outcome"] for r in report["rows"]] == ["bit-identical"] * 4
    assert all(r["bit_identity_expected"] for r in report["rows"])
    assert all(r["n_values"] > 1000 for r in report["rows"])  # per-task errors, curves, fits
    assert report["verdict_changes"] == []
    markdown = (tmp_path / "VERIFY.md").read_text()
    assert "No cell, claim or ablation verdict would change." in markdown
    assert "4 jobs: 4 bit-identical" in capsys.readouterr().out


def _alter_one_number(path: Path, value: float) -> None:
    """One per-task error changed, the checksum made to match (a record of other code, not a
    damaged file: the reader would refuse a mismatched checksum)."""
    record = json.loads(path.read_text())
    worst = record["per_task"].index(max(record["per_task"]))
    record["per_task"][worst] = value
    record["checksum"] = checksum(record)
    path.write_text(json.dumps(record))


def test_an_altered_committed_number_differs_and_names_the_changed_verdict(
    smoke_results, tmp_path, capsys
):
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    altered = results / "runs" / "T1" / "T1-hsml-5-shot-seed0-smoke.json"
    _alter_one_number(altered, 1e4)
    code = _verify(results, tmp_path / "work")
    assert code == EXIT_UNVERIFIED
    report = json.loads((results / "VERIFY.json").read_text())
    rows = {r["job"]: r for r in report["rows"]}
    assert rows["T1-hsml-5-shot-seed0"]["outcome"] == "differs"
    assert rows["T1-hsml-5-shot-seed0"]["n_differing"] == 1
    assert rows["T1-hsml-5-shot-seed0"]["max_abs"] > 9000
    assert {r["outcome"] for j, r in rows.items() if j != "T1-hsml-5-shot-seed0"} == {
        "bit-identical"
    }
    changed = report["verdict_changes"]
    assert any("hsml 5-shot against the published value" in c for c in changed), changed
    err = capsys.readouterr().err
    assert "verdict would change: T1 (smoke)" in err
    assert json.loads(altered.read_text())["per_task"].count(1e4) == 1  # never rewritten


def test_a_damaged_committed_file_cannot_be_reproduced_and_is_left_where_it_is(
    smoke_results, tmp_path, capsys
):
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    damaged = results / "runs" / "T1" / "T1-maml-5-shot-seed1-smoke.json"
    text = damaged.read_text()
    damaged.write_text(text.replace('"per_task": [', '"per_task": [1.5, ', 1))  # no re-checksum
    code = _verify(results, tmp_path / "work", "--strict", "--tables", "T1")
    assert code == EXIT_UNVERIFIED
    assert damaged.exists() and not list(damaged.parent.glob("*corrupt*"))
    rows = {r["job"]: r for r in json.loads((results / "VERIFY.json").read_text())["rows"]}
    assert rows["T1-maml-5-shot-seed1-smoke"]["outcome"] == "cannot be re-run"
    assert "checksum" in rows["T1-maml-5-shot-seed1-smoke"]["why"]
    assert "cannot be re-run" in capsys.readouterr().err


def test_a_sample_of_n_is_the_same_for_the_same_seed(smoke_results, tmp_path):
    jobs = rv.committed_jobs(smoke_results / "results")
    assert len(jobs) == 4
    first = [c.name for c in rv.sample(jobs, 2, seed=7)]
    assert first == [c.name for c in rv.sample(list(reversed(jobs)), 2, seed=7)]
    assert len(set(first)) == 2
    picks = {tuple(c.name for c in rv.sample(jobs, 2, seed=s)) for s in range(20)}
    assert len(picks) > 1  # the seed matters
    assert [c.name for c in rv.sample(jobs, 9, seed=1)] == sorted(c.name for c in jobs)
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    argv = ["--sample", "2", "--sample-seed", "7"]
    assert _verify(results, tmp_path / "work", *argv) == 0
    report = json.loads((results / "VERIFY.json").read_text())
    assert [r["job"] for r in report["rows"]] == first
    assert report["selection"]["sample"] == 2


def test_measurements_compare_number_by_number():
    committed = {"per_task": [1.0, 2.0], "events": [{"at": 3}], "mean": 1.5, "provenance": {}}
    same = rv.compare_measurements(committed, json.loads(json.dumps(committed)))
    assert same.outcome == "bit-identical" and same.n_values == 4
    close = rv.compare_measurements(committed, {**committed, "per_task": [1.0, 2.0 + 1e-9]})
    assert close.outcome == "equal within tolerance" and close.max_abs == pytest.approx(1e-9)
    far = rv.compare_measurements(committed, {**committed, "events": [{"at": 4}]})
    assert far.outcome == "differs" and far.first_differences == ["events[0].at: 3 → 4"]
    newer = {k: v for k, v in committed.items() if k != "mean"}  # derived, version 1 only
    assert rv.compare_measurements(committed, newer).not_compared == ["mean"]


def test_bit_identity_is_expected_only_on_the_same_torch_and_cpu():
    cpu = {"provenance": {"torch": "2.13.0+cpu", "device": "CPU (x86_64, 1 thread)"}}
    assert rv.bit_identity_expected(cpu, cpu)[0]
    other = {"provenance": {"torch": "2.14.1", "device": "CPU (x86_64, 1 thread)"}}
    expected, why = rv.bit_identity_expected(cpu, other)
    assert not expected and "torch 2.13.0+cpu → 2.14.1" in why
    gpu = {"provenance": {"torch": "2.13.0", "device": "NVIDIA H200"}}
    legacy = {"environment": {"torch": "2.13.0+cpu", "device": "CPU (x86_64, 1 threads)"}}
    assert rv.bit_identity_expected(legacy, cpu)[0]
    expected, why = rv.bit_identity_expected(gpu, gpu)
    assert not expected and "a GPU (NVIDIA H200)" in why


def test_replace_copies_the_reruns_after_the_comparison_and_renders_the_tables(
    smoke_results, tmp_path
):
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    (results / "T1.md").unlink()
    assert _verify(results, tmp_path / "work", "--replace") == 0
    for rerun in sorted((tmp_path / "work" / "runs" / "T1").glob("*.json")):
        assert (results / "runs" / "T1" / rerun.name).read_bytes() == rerun.read_bytes()
    assert (results / "T1.md").exists() and (results / "VERIFY.md").exists()


def test_replace_is_refused_when_a_verdict_would_change(smoke_results, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "results", results)
    altered = results / "runs" / "T1" / "T1-hsml-5-shot-seed0-smoke.json"
    _alter_one_number(altered, 1e4)
    before = altered.read_bytes()
    assert _verify(results, tmp_path / "work", "--replace") == EXIT_UNVERIFIED
    assert altered.read_bytes() == before
    assert "--replace refused" in capsys.readouterr().err
