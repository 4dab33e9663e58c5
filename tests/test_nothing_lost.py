"""Nothing lost, nothing silently wrong: a stale checkpoint never blocks a job, the rows of an
uninstalled plug-in are kept, and bad settings are one line before anything is written."""

from __future__ import annotations

import json
import shutil

from hsmlbench.cli import main
from hsmlbench.results.schema import checksum
from hsmlbench.run.jobs import Job, raw_path, run_dir
from hsmlbench.run.single_job import run_job


def test_a_checkpoint_of_another_run_is_set_aside_and_the_job_starts_afresh(tmp_path, capsys):
    """The README's own workflow leaves one: another seed's (or meta-step's) checkpoint in a
    job's folder. Before, the job failed on every rerun with advice to "drop --resume"."""
    work, out = tmp_path / "w", tmp_path / "out"
    seed0, seed1 = (Job("T1", "maml", "5-shot", s, "smoke") for s in (0, 1))
    run_job(seed0, out, work, progress=False)
    run_dir(work, seed1).mkdir(parents=True)
    shutil.copy(run_dir(work, seed0) / "checkpoint.pt", run_dir(work, seed1) / "checkpoint.pt")
    raw = run_job(seed1, out, work, progress=False)
    assert raw["status"] == "done" and raw["seed"] == 1
    err = capsys.readouterr().err
    assert "a checkpoint of another run" in err and "this job starts afresh" in err
    assert list(run_dir(work, seed1).glob("checkpoint.pt.superseded-*"))  # kept


def test_rows_of_an_uninstalled_plugin_are_kept_and_said_so(tmp_path):
    work, out = tmp_path / "w", tmp_path / "out"
    job = Job("T1", "maml", "5-shot", 0, "smoke")
    raw = run_job(job, out, work, progress=False)
    raw |= {"method": "ghostplug", "job": "T1-ghostplug-5-shot-seed0"}
    raw["checksum"] = checksum(raw)
    (out / "runs" / "T1" / "T1-ghostplug-5-shot-seed0-smoke.json").write_text(json.dumps(raw))
    assert main(["report", str(out)]) == 0
    table = (out / "T1-extended.md").read_text()
    assert "| ghostplug " in table and "Rows of ghostplug are kept" in table
    assert (out / "T1.md").exists() and (out / "FINDINGS.md").exists()
    assert raw_path(out, job).exists()


def test_bad_settings_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-cell-minutes", "nan"]) == 2
    assert "--max-cell-minutes nan: need 0 (no bound) or more" in capsys.readouterr().err
    monkeypatch.setenv("HSMLBENCH_META_STEP", "bogus")
    assert main(argv) == 2
    assert "HSMLBENCH_META_STEP='bogus': choose one of fast, autograd" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_new_train_never_overwrites_the_checkpoint_in_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    cell = ["--table", "T1", "--method", "maml", "--budget", "smoke", "--run-dir", str(run)]
    assert main(["train", *cell, "--seed", "1", "--quiet"]) == 0
    first = (run / "checkpoint.pt").read_bytes()
    assert main(["train", *cell, "--seed", "2", "--quiet"]) == 0  # another seed, no --resume
    (kept,) = run.glob("checkpoint.pt.superseded-*")
    assert kept.read_bytes() == first
    assert "a new run starts here (no --resume); set aside as" in capsys.readouterr().err


def test_a_finished_record_of_other_code_is_kept_when_its_job_runs_again(tmp_path):
    work, out = tmp_path / "w", tmp_path / "out"
    job = Job("T1", "maml", "5-shot", 0, "smoke")
    old = run_job(job, out, work, progress=False) | {"code_version": "0.0.1+older"}
    old["checksum"] = checksum(old)
    raw_path(out, job).write_text(json.dumps(old))
    run_job(job, out, work, progress=False)
    (kept,) = raw_path(out, job).parent.glob("*.superseded-*")
    assert json.loads(kept.read_text())["code_version"] == "0.0.1+older"


def test_prepare_refuses_a_source_inside_its_target_and_a_foreign_target(tmp_path):
    import pytest

    from hsmlbench.domains.images.datasets import DataError
    from hsmlbench.domains.images.prepare import prepare_dataset

    target = tmp_path / "meta-dataset" / "CUB_Bird"
    target.mkdir(parents=True)
    source = target / "CUB_200_2011.tgz"
    source.write_bytes(b"archive")
    unrelated = target / "notes.txt"
    unrelated.write_text("mine")
    with pytest.raises(DataError, match="is inside .* which prepare replaces"):
        prepare_dataset("bird", source, tmp_path, force=True)
    elsewhere = tmp_path / "CUB_200_2011.tgz"
    elsewhere.write_bytes(b"archive")
    with pytest.raises(DataError, match="not a dataset hsmlbench prepared"):
        prepare_dataset("bird", elsewhere, tmp_path, force=True)
    assert source.read_bytes() == b"archive" and unrelated.read_text() == "mine"


def test_report_names_what_is_wrong_with_a_table_file(tmp_path, capsys):
    from pathlib import Path

    fixture = json.loads((Path(__file__).parent / "data" / "T1_fixture.json").read_text())
    cases = {
        "binary.json": b"\x89PNG\x00\xff\xfe",
        "deep.json": ("[" * 100_000 + "]" * 100_000).encode(),
        "inf.json": json.dumps(
            fixture | {"rows": [fixture["rows"][0] | {"per_task": [float("inf")] * 3}]}
        ).encode(),
        "twice.json": json.dumps(
            fixture | {"rows": fixture["rows"] + fixture["rows"][:1]}
        ).encode(),
    }
    expected = {
        "binary.json": "is not valid JSON",
        "deep.json": "nested too deeply",
        "inf.json": "per-task errors that are not finite numbers",
        "twice.json": "has two rows",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert main(["report", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and expected[name] in err, err


def test_evaluate_uses_the_previous_checkpoint_when_only_it_is_left(tmp_path, capsys):
    run = tmp_path / "run"
    cell = ["--table", "T1", "--method", "maml", "--budget", "smoke", "--run-dir", str(run)]
    assert main(["train", *cell, "--quiet"]) == 0
    (run / "checkpoint.pt").rename(run / "checkpoint.previous.pt")
    out = tmp_path / "raw.json"
    assert main(["evaluate", *cell, "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["status"] == "done"
