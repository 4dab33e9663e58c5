"""Raw records: one builder, one validating reader for every writer and reader, measurements
only, and version-1 files read as legacy without being rewritten."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from hsmlbench.cli import main
from hsmlbench.report.assemble import assemble_table
from hsmlbench.report.derived import cluster_structure_of, mean_assignments_by_family
from hsmlbench.report.statistics import mean_ci95
from hsmlbench.results.schema import (
    SCHEMA_VERSION,
    RawFileError,
    checksum,
    decode_array,
    encode_array,
    record_problem,
)
from hsmlbench.results.store import load_raw, raw_files, read_raw
from hsmlbench.run.jobs import Job, raw_path

# Two version-1 records as committed until the verified re-run of 2026-12-05 replaced them
# (code version 0.1.0+b803c9e11742): a finished MAML row and a diverged Meta-SGD one.
LEGACY_V1 = Path(__file__).parent / "data" / "legacy_v1"
DERIVED = {"mean", "ci95", "n_tasks", "per_family_mean", "mean_assignments_by_family"}


@pytest.fixture(scope="module")
def grid_and_evaluate(tmp_path_factory):
    """T1 HSML 5-shot at the smoke budget through `reproduce`, and the same trained cell
    through `train` then `evaluate`."""
    root = tmp_path_factory.mktemp("records")
    grid = ["reproduce", "--tables", "T1", "--methods", "hsml", "--settings", "5-shot"]
    grid += ["--budget", "smoke", "--jobs", "1", "--quiet", "--out", str(root / "out")]
    assert main([*grid, "--work-dir", str(root / "work")]) == 0
    cell = ["--table", "T1", "--method", "hsml", "--setting", "5-shot", "--budget", "smoke"]
    cell += ["--run-dir", str(root / "run")]
    assert main(["train", *cell, "--quiet"]) == 0
    assert main(["evaluate", *cell, "--out", str(root / "evaluated.json")]) == 0
    job = Job("T1", "hsml", "5-shot", 0, "smoke")
    return read_raw(raw_path(root / "out", job), named=True), read_raw(root / "evaluated.json")


def test_evaluate_writes_the_grid_record_read_by_the_same_reader(grid_and_evaluate):
    from_grid, from_evaluate = grid_and_evaluate
    assert from_grid.keys() == from_evaluate.keys()
    assert from_grid["schema_version"] == from_evaluate["schema_version"] == SCHEMA_VERSION
    assert from_grid["job"] == from_evaluate["job"] == "T1-hsml-5-shot-seed0"
    assert from_grid["code_version"] == from_evaluate["code_version"]
    # the same training and test tasks: the same measurements, bit for bit
    assert from_grid["per_task"] == from_evaluate["per_task"]
    assert from_grid["assignments"] == from_evaluate["assignments"]


def test_a_record_holds_measurements_and_report_code_derives_the_rest(grid_and_evaluate):
    raw, _ = grid_and_evaluate
    assert DERIVED.isdisjoint(raw) and "cluster_structure" not in raw
    level1 = decode_array(raw["assignments"]["level1"])
    family = np.asarray(raw["task_family"])
    assert level1.shape == (len(raw["per_task"]), 4)
    np.testing.assert_allclose(level1.sum(axis=1), 1.0, rtol=1e-5)
    # the means by family are the per-task assignments' means, family by family (a loop)
    means = mean_assignments_by_family(raw)["level1"]
    for index, name in enumerate(("sin", "line", "quadratic", "cubic")):
        rows = [level1[t] for t in range(len(family)) if family[t] == index]
        np.testing.assert_allclose(means[name], np.mean(rows, axis=0))
    assert 0.0 <= cluster_structure_of(raw)["nmi"] <= 1.0


def test_assignments_are_stored_exactly_as_float32():
    values = np.random.default_rng(0).random((7, 4)).astype(np.float32)
    stored = json.loads(json.dumps(encode_array(values)))
    np.testing.assert_array_equal(decode_array(stored), values.astype(np.float64))


def _a_record(raw: dict, **changes) -> dict:
    return json.loads(json.dumps(raw)) | changes


@pytest.mark.parametrize(
    "change, why",
    [
        ({"seed": "0"}, "no valid 'seed' field"),
        ({"status": "finished"}, "unknown status"),
        ({"schema_version": 9}, "schema_version 9"),
        ({"per_task": []}, "'per_task' is not a non-empty list"),
        ({"per_task": [float("nan")] * 200}, "non-finite"),
        ({"per_task": [1.0] * 199}, "'per_task_by_step[0]' has 200 tasks, per_task 199"),
    ],
)
def test_the_reader_names_what_is_wrong(grid_and_evaluate, tmp_path, change, why):
    """Each inconsistency named, even in a record whose checksum was recomputed after the
    edit (a writer's bug, not a hand edit: the checksum catches those first, below)."""
    raw = _a_record(grid_and_evaluate[0], **change)
    raw["checksum"] = checksum(raw)
    path = tmp_path / f"{raw['job']}-{raw['budget']}.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RawFileError) as error:
        read_raw(path)
    assert why in str(error.value)


def test_a_copy_under_another_name_is_set_aside_by_the_grid_reader(grid_and_evaluate, tmp_path):
    raw, _ = grid_and_evaluate
    copy = tmp_path / "runs" / "T1" / "T1-hsml-5-shot-seed1-smoke.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(raw))
    lines = []
    assert load_raw(copy, lines.append) is None and not copy.exists()
    assert "holds job T1-hsml-5-shot-seed0 at budget smoke: a copy" in lines[0]


def test_record_problem_accepts_the_builders_records(grid_and_evaluate):
    for raw in grid_and_evaluate:
        assert record_problem(raw) is None


def test_version_1_records_are_read_as_legacy_and_never_rewritten(tmp_path):
    (tmp_path / "runs" / "T1").mkdir(parents=True)
    for packed in LEGACY_V1.glob("*.json.gz"):
        (tmp_path / "runs" / "T1" / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))
    before = {p.name: p.read_bytes() for p in (tmp_path / "runs" / "T1").iterdir()}
    raws = raw_files(tmp_path, "T1", "paper")
    assert len(raws) == len(before) > 0
    assert all(r.get("legacy") and r["provenance"]["commit"] for r in raws)
    data = assemble_table("T1", "paper", tmp_path)
    # the statistics come from the per-task errors: equal to what version 1 stored
    for row in data["rows"]:
        stored = json.loads(
            (
                tmp_path
                / "runs"
                / "T1"
                / f"T1-{row['method']}-{row['setting']}-seed{row['seed']}-paper.json"
            ).read_text()
        )
        assert (row["mean"], row["ci95"]) == pytest.approx(
            (stored["mean"], stored["ci95"]), rel=1e-12
        )
        assert mean_ci95(stored["per_task"]) == (row["mean"], row["ci95"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / "T1").iterdir()} == before


@pytest.mark.parametrize(
    "field, value",
    [("method", "maml"), ("seed", 1), ("per_task", None), ("config", None)],
)
def test_a_hand_edited_record_fails_its_checksum(grid_and_evaluate, tmp_path, field, value):
    """Changing what a record says (which method, which seed, a per-task error, its config)
    without the code that measured it: the reader refuses it, so its job runs again."""
    raw = _a_record(grid_and_evaluate[0])
    if field == "per_task":
        raw["per_task"][7] *= 0.5
    elif field == "config":
        raw["config"]["inner_lr"] = 0.01
    else:
        raw[field] = value
    path = tmp_path / f"{raw['job']}-{raw['budget']}.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RawFileError) as error:
        read_raw(path)
    assert "checksum does not match" in str(error.value) or "edited or mixed up" in str(error.value)


def test_a_record_whose_identity_disagrees_with_its_job_is_refused(grid_and_evaluate, tmp_path):
    """MAML's numbers relabelled as HSML (checksum recomputed): the job name still says
    which method measured them."""
    raw = _a_record(grid_and_evaluate[0], method="maml")
    raw["checksum"] = checksum(raw)
    path = tmp_path / f"{raw['job']}-{raw['budget']}.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RawFileError, match="names job T1-hsml-5-shot-seed0 but holds T1 maml"):
        read_raw(path)


def test_a_record_of_another_table_in_a_tables_folder_is_set_aside(grid_and_evaluate, tmp_path):
    raw = _a_record(grid_and_evaluate[0])
    stray = tmp_path / "runs" / "T2" / f"{raw['job']}-{raw['budget']}.json"
    stray.parent.mkdir(parents=True)
    stray.write_text(json.dumps(raw))
    lines = []
    assert raw_files(tmp_path, "T2", "smoke", lines.append) == []
    assert "holds a job of table T1, not T2" in lines[0] and not stray.exists()
