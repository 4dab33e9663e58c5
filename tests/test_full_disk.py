"""A full disk and a read-only folder, for real: small tmpfs mounts (CI runs as root). Each is
one line naming the path and the problem, with the jobs-failed summary intact."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from hsmlbench.cli import main


@contextlib.contextmanager
def mounted(folder, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount refused'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


GRID = ["reproduce", "--tables", "T1", "--methods", "maml", "mumomaml", "--settings", "5-shot"]
GRID += ["--budget", "smoke", "--jobs", "1", "--quiet"]


def test_a_full_disk_is_one_line_per_job_with_the_summary_intact(tmp_path, capsys):
    with mounted(tmp_path / "full", "size=64k") as full:
        assert main([*GRID, "--out", str(full / "out")]) == 3
    err = capsys.readouterr().err
    assert "2 of 2 jobs failed" in err
    assert err.count("no space left on device writing ") == 2
    assert "inline_container" not in err and "Traceback" not in err


def test_train_on_a_full_disk_names_the_file(tmp_path, capsys):
    with mounted(tmp_path / "full", "size=64k") as full:
        argv = ["train", "--table", "T1", "--method", "hsml", "--budget", "smoke", "--quiet"]
        assert main([*argv, "--run-dir", str(full / "run")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device writing " in err[0]
    assert "checkpoint.pt (nothing was replaced); free some space" in err[0]


def test_a_read_only_output_folder_is_refused_before_any_job(tmp_path, capsys):
    with mounted(tmp_path / "ro", "ro,size=64k") as read_only:
        assert main([*GRID, "--out", str(read_only / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable" in err[0] and "on a read-only file system" in err[0]
    assert not (tmp_path / "ro" / "out").exists()
