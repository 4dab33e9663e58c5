"""Nothing silent, nothing stuck: every bad input ends as one line on stderr that names the
problem and its fix (no traceback), with the exit code docs/RUNNING.md gives, and writes nothing it should not.

2: bad arguments or an unusable folder; 1: a data problem in ``data prepare``/``data check``;
3: a run that stopped (a NaN, an unexpected error); 5: data missing for a cell; 130: Ctrl-C.
"""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from hsmlbench.cli import main
from hsmlbench.domains import run_config

FIXTURE = Path(__file__).parent / "data" / "T1_fixture.json"
SMOKE_T1 = ["--table", "T1", "--method", "maml", "--setting", "5-shot", "--budget", "smoke"]
needs_permissions = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions"
)


def one_line(capsys) -> str:
    """stderr, asserted to be exactly one line and no traceback."""
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def read_only():
    """chmod 0o555 on a folder for the test, restored afterwards (so tmp_path can be removed)."""
    folders = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        folders.append(folder)
        return folder

    yield make
    for folder in folders:
        folder.chmod(0o755)


# --- report ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        "5",
        '"table rows budget"',
        '{"table": "T1", "rows": [',  # truncated
        '{"table": "T1", "rows": {}, "budget": {}}',
        '{"table": "T1", "rows": [{"method": "maml"}], "budget": {"name": "smoke"}}',
    ],
)
def test_report_on_json_of_the_wrong_shape(text, tmp_path, capsys):
    source = tmp_path / "T1.json"
    source.write_text(text)
    assert main(["report", str(source)]) == 2
    err = one_line(capsys)
    assert str(source) in err and ("not a hsmlbench table file" in err or "not valid JSON" in err)
    assert tree(tmp_path) == ["T1.json"]


def test_report_on_a_folder_without_raw_records(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = one_line(capsys)
    assert f"{tmp_path} holds no raw records under runs/" in err
    assert tree(tmp_path) == []


def test_report_on_a_missing_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "T1.json")]) == 2
    assert f"no results file at {tmp_path / 'T1.json'}" in one_line(capsys)
    assert tree(tmp_path) == []


def test_report_whose_output_is_a_folder(tmp_path, capsys):
    shutil.copy(FIXTURE, tmp_path / "T1.json")
    (tmp_path / "T1.md").mkdir()
    assert main(["report", str(tmp_path / "T1.json")]) == 2
    assert f"cannot write {tmp_path / 'T1.md'}" in one_line(capsys)
    assert tree(tmp_path) == ["T1.json", "T1.md"]  # no temporary file left


@needs_permissions
def test_report_next_to_a_read_only_json(tmp_path, capsys, read_only):
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "T1.json")
    read_only(folder)
    assert main(["report", str(folder / "T1.json")]) == 2
    err = one_line(capsys)
    assert f"cannot write {folder / 'T1.md'}" in err and "Permission denied" in err
    assert tree(folder) == ["T1.json"]


# --- train, evaluate -------------------------------------------------------------------------


def test_train_resume_without_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SMOKE_T1, "--run-dir", str(run), "--resume"]) == 2
    err = one_line(capsys)
    assert f"no checkpoint in {run}; start the run without --resume" in err
    assert not run.exists()


def test_evaluate_with_another_runs_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    other = run_config("T1", "maml", "10-shot", "smoke")
    torch.save({"iteration": 60, "config": other.to_dict(), "seed": 0}, run / "checkpoint.pt")
    out = tmp_path / "raw.json"
    assert main(["evaluate", *SMOKE_T1, "--run-dir", str(run), "--out", str(out)]) == 2
    err = one_line(capsys)
    assert f"{run / 'checkpoint.pt'} belongs to another run (T1 maml 10-shot" in err
    assert "--resume" not in err  # evaluate has no --resume
    assert not out.exists() and tree(run) == ["checkpoint.pt"]


def test_evaluate_with_out_a_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    run = tmp_path / "run"
    assert main(["evaluate", *SMOKE_T1, "--run-dir", str(run), "--out", str(out)]) == 2
    assert f"--out {out} is a folder; give a file name" in one_line(capsys)
    assert tree(tmp_path) == ["out"]


def test_a_nan_stops_train_with_one_line(tmp_path, capsys, monkeypatch):
    from hsmlbench.domains.regression.domain import RegressionDomain

    monkeypatch.setattr(
        RegressionDomain, "meta_step", lambda self, *a: (float("nan"), torch.zeros(1))
    )
    run = tmp_path / "run"
    assert main(["train", *SMOKE_T1, "--run-dir", str(run), "--quiet"]) == 3
    err = one_line(capsys)
    assert "meta-loss is nan at iteration 0; no checkpoint was written yet" in err
    assert "Lower the outer learning rate" in err
    assert not list(run.glob("checkpoint*"))


# --- reproduce -------------------------------------------------------------------------------


def reproduce_t1(out: Path, work: Path) -> list[str]:
    return ["reproduce", "--tables", "T1", "--methods", "maml", "--settings", "5-shot"] + [
        "--budget",
        "smoke",
        "--jobs",
        "1",
        "--quiet",
        "--out",
        str(out),
        "--work-dir",
        str(work),
    ]


def test_reproduce_with_work_dir_a_file(tmp_path, capsys):
    work = tmp_path / "work"
    work.write_text("not a folder")
    out = tmp_path / "out"
    assert main(reproduce_t1(out, work)) == 2
    err = one_line(capsys)
    assert f"--work-dir {work} is not writable ({work} is a file, not a folder)" in err
    assert tree(tmp_path) == ["work"] and work.read_text() == "not a folder"


@needs_permissions
def test_reproduce_with_a_read_only_work_dir(tmp_path, capsys, read_only):
    work = read_only(tmp_path / "work")
    out = tmp_path / "out"
    assert main(reproduce_t1(out, work / "runs")) == 2
    err = one_line(capsys)
    assert f"--work-dir {work / 'runs'} is not writable (no permission to write in {work})" in err
    assert tree(tmp_path) == ["work"]


def test_reproduce_with_out_a_file(tmp_path, capsys):
    out = tmp_path / "out.md"
    out.write_text("mine")
    work = tmp_path / "work"
    assert main(reproduce_t1(out, work)) == 2
    err = one_line(capsys)
    assert f"--out {out} is not writable ({out} is a file, not a folder)" in err
    assert tree(tmp_path) == ["out.md"] and out.read_text() == "mine"


@pytest.mark.parametrize("command", ["reproduce", "train", "evaluate"])
def test_a_bad_kernels_value_stops_every_training_command(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HSMLBENCH_KERNELS", "cuda")
    argv = {
        "reproduce": reproduce_t1(tmp_path / "out", tmp_path / "work"),  # MAML only: no kernels
        "train": ["train", *SMOKE_T1, "--run-dir", str(tmp_path / "run")],
        "evaluate": [
            "evaluate",
            *SMOKE_T1,
            "--run-dir",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "raw.json"),
        ],
    }[command]
    assert main(argv) == 2
    err = one_line(capsys)
    assert "HSMLBENCH_KERNELS='cuda': use triton, torch, or leave it unset" in err
    assert tree(tmp_path) == []


def test_reproduce_of_T3_without_a_data_root_is_one_line_about_the_root(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("HSMLBENCH_DATA", raising=False)
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["reproduce", "--tables", "T3", "--methods", "maml", "--budget", "smoke"]
    argv += ["--jobs", "1", "--quiet", "--out", str(out), "--work-dir", str(work)]
    assert main(argv) == 5
    err = one_line(capsys)
    assert "1 of 1 jobs did not run: their data is missing: no data root" in err
    assert "--data-root PATH or set HSMLBENCH_DATA=PATH" in err
    assert "Bird" not in err and "Fungi" not in err  # one problem, not one per dataset
    assert (out / "T3.md").exists() and not work.exists()  # the table says "not run"
    from hsmlbench.run.versioning import code_version

    header = (out / "T3.md").read_text()
    assert f"no row; recorded by code version {code_version('images')} (commit " in header


def test_train_of_T3_with_a_missing_data_root_is_one_line_about_the_root(tmp_path, capsys):
    run, root = tmp_path / "run", tmp_path / "no-data"
    cell = ["--table", "T3", "--method", "maml", "--setting", "1-shot", "--budget", "smoke"]
    assert main(["train", *cell, "--run-dir", str(run), "--data-root", str(root)]) == 5
    err = one_line(capsys)
    assert f"data missing: data root {root} does not exist" in err and "Bird" not in err
    assert tree(tmp_path) == []


# --- data prepare, data check ----------------------------------------------------------------


def test_data_prepare_with_a_data_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "root"
    root.write_text("a file")
    source = tmp_path / "src"
    source.mkdir()
    argv = ["data", "prepare", "--dataset", "bird", "--source", str(source)]
    assert main([*argv, "--data-root", str(root)]) == 1
    assert f"data root {root} is a file, not a folder" in one_line(capsys)
    assert main(["data", "check", "--data-root", str(root)]) == 1
    assert f"data root {root} is a file, not a folder" in one_line(capsys)
    assert tree(tmp_path) == ["root", "src"] and root.read_text() == "a file"


@needs_permissions
def test_data_prepare_with_a_read_only_data_root(tmp_path, capsys, read_only):
    root = read_only(tmp_path / "root")
    source = tmp_path / "src"
    source.mkdir()
    argv = ["data", "prepare", "--dataset", "bird", "--source", str(source)]
    assert main([*argv, "--data-root", str(root)]) == 1
    err = one_line(capsys)
    assert f"data root {root}: cannot write in {root / 'meta-dataset'}" in err
    assert tree(root) == []


def test_data_prepare_names_a_wrong_archive_by_its_own_path(tmp_path, capsys):
    archive = tmp_path / "CUB_200_2011.tgz"  # the right name, the wrong contents
    with tarfile.open(archive, "w:gz") as tar:
        data = b"not the birds"
        info = tarfile.TarInfo("something-else/README.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    root = tmp_path / "root"
    argv = ["data", "prepare", "--dataset", "bird", "--source", str(archive)]
    assert main([*argv, "--data-root", str(root)]) == 1
    err = one_line(capsys)
    assert f"hsmlbench: {archive} does not look like CUB-200-2011" in err
    assert ".prepare-" not in err  # not the staging folder, deleted by now
    assert not root.exists()


# --- the safety net and --debug --------------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_exit_3(tmp_path, capsys, monkeypatch):
    import hsmlbench.report.tables as tables

    def boom(data):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tables, "render_markdown", boom)
    monkeypatch.delenv("HSMLBENCH_DEBUG", raising=False)
    shutil.copy(FIXTURE, tmp_path / "T1.json")
    assert main(["report", str(tmp_path / "T1.json")]) == 3
    err = one_line(capsys)
    assert err == "hsmlbench: RuntimeError: boom second line (run with --debug for the traceback)\n"
    assert tree(tmp_path) == ["T1.json"]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_re_raises_for_the_traceback(how, tmp_path, monkeypatch):
    import hsmlbench.report.tables as tables

    def boom(data):
        raise RuntimeError("boom")

    monkeypatch.setattr(tables, "render_markdown", boom)
    shutil.copy(FIXTURE, tmp_path / "T1.json")
    argv = ["report", str(tmp_path / "T1.json")]
    if how == "flag":
        monkeypatch.delenv("HSMLBENCH_DEBUG", raising=False)
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("HSMLBENCH_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)
    from hsmlbench.cli import UsageError

    with pytest.raises(UsageError, match="no results file"):  # expected errors too
        main([*argv[:-1], str(tmp_path / "missing.json")])


def test_ctrl_c_is_exit_130(tmp_path, capsys, monkeypatch):
    import hsmlbench.report.tables as tables

    def interrupt(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(tables, "render_markdown", interrupt)
    shutil.copy(FIXTURE, tmp_path / "T1.json")
    assert main(["report", str(tmp_path / "T1.json")]) == 130
    assert "interrupted; re-run the same command" in capsys.readouterr().err


def test_the_fixture_still_reports(tmp_path, capsys):
    """The good path next to all the bad ones: a table file re-renders (exit 0)."""
    shutil.copy(FIXTURE, tmp_path / "T1.json")
    assert main(["report", str(tmp_path / "T1.json")]) == 0
    assert (tmp_path / "T1.md").exists() and json.loads((tmp_path / "T1.json").read_text())
