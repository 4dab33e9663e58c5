"""Stray, corrupt and unreadable files never change or block a table (issue: reliability)."""

import json
import os
import stat

import pytest

from hsmlbench.atomic import write_json
from hsmlbench.cli import main
from hsmlbench.run.jobs import Job, raw_path

JOB = Job("T1", "maml", "5-shot", 0, "smoke")


def _argv(tmp_path):
    return [
        "reproduce", "--tables", "T1", "--methods", "maml", "--settings", "5-shot",
        "--budget", "smoke", "--jobs", "1", "--quiet",
        "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished smoke job and its table: the untouched reference."""
    root = tmp_path_factory.mktemp("reference")
    assert main(_argv(root)) == 0
    return root


def _copy_reference(finished, tmp_path):
    raw = raw_path(finished / "out", JOB)
    target = raw_path(tmp_path / "out", JOB)
    target.parent.mkdir(parents=True)
    target.write_bytes(raw.read_bytes())
    return target


def _rows(path):
    return [
        {k: r[k] for k in ("method", "seed", "per_task")}
        for r in json.loads(path.read_text())["rows"]
    ]


def test_a_stray_copy_is_set_aside_not_counted_as_a_seed(finished, tmp_path, capsys):
    raw = _copy_reference(finished, tmp_path)
    stray = raw.with_name(f"copy of {raw.name}")
    stray.write_bytes(raw.read_bytes())
    assert main(_argv(tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"{stray}: holds job T1-maml-5-shot-seed0 at budget smoke: a copy" in err
    assert not stray.exists() and len(list(raw.parent.glob(f"{stray.name}.corrupt-*"))) == 1
    assert _rows(tmp_path / "out" / "T1.json") == _rows(finished / "out" / "T1.json")  # one seed


@pytest.mark.parametrize("content", ["", '{"job": "T1-maml', "[]", '{"job": 3}'])
def test_a_corrupt_raw_file_is_set_aside_and_its_job_runs_again(
    finished, tmp_path, capsys, content
):
    raw = _copy_reference(finished, tmp_path)
    raw.write_text(content)
    assert main(_argv(tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"hsmlbench: {raw}: " in err and "set aside as" in err
    assert len(list(raw.parent.glob(f"{raw.name}.corrupt-*"))) == 1
    assert _rows(tmp_path / "out" / "T1.json") == _rows(finished / "out" / "T1.json")


def test_files_get_the_umasks_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "shared.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_run_goes_on(tmp_path, capsys, damage):
    """The grid resumes from the previous good checkpoint and ends where an untouched run
    ends."""
    import dataclasses

    import torch

    from hsmlbench.configs import Budget
    from hsmlbench.domains.regression.configs import run_config
    from hsmlbench.run.training import CHECKPOINT, previous_checkpoint, train

    config = dataclasses.replace(
        run_config("T1", "maml", "5-shot", "smoke"), budget=Budget("t", 24, 20, 8, "test")
    )
    full = train(config, seed=0, run_dir=tmp_path / "full", progress=False)
    cut = tmp_path / "cut"
    train(config, seed=0, run_dir=cut, progress=False, stop_after=16)
    assert previous_checkpoint(cut / CHECKPOINT).exists()  # iteration 8, kept beside 16
    data = (cut / CHECKPOINT).read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "empty": b"", "random": os.urandom(4096)}
    (cut / CHECKPOINT).write_bytes(damaged[damage])
    resumed = train(config, seed=0, run_dir=cut, resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"{cut / CHECKPOINT}: not a readable checkpoint" in err and "set aside as" in err
    assert "resuming from the previous checkpoint" in err and "(iteration 8)" in err
    assert resumed.losses == full.losses
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_never_trains_an_unfinished_run(tmp_path, capsys):
    from hsmlbench.domains.regression.configs import run_config
    from hsmlbench.run.training import train

    run = tmp_path / "run"
    train(
        run_config("T1", "maml", "5-shot", "smoke"),
        seed=0,
        run_dir=run,
        progress=False,
        stop_after=20,
    )
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["evaluate", "--table", "T1", "--method", "maml", "--budget", "smoke"]
    assert main([*argv, "--run-dir", str(run), "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is at iteration 20 of 60 and evaluate never trains" in err
    assert f"--run-dir {run} --resume" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # untouched
    assert not (tmp_path / "e.json").exists()
    # another run's checkpoint: named, with the fix (evaluate has no --resume to drop)
    assert (
        main([*argv, "--seed", "3", "--run-dir", str(run), "--out", str(tmp_path / "e.json")]) == 2
    )
    assert "belongs to another run" in capsys.readouterr().err
