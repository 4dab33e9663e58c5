import json
import subprocess
import sys

import pytest

from hsmlbench.cli import main
from hsmlbench.report.paper_reference import PUBLISHED

ROW_FIELDS = {"method", "setting", "seed", "n_tasks", "mean", "ci95", "per_task"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["reproduce", "--tables", "T9", "--budget", "smoke"],
            "unknown table 'T9'; known: T1, T2, ablations, T3, T4",
        ),
        (["reproduce", "--methods", "reptile", "--budget", "smoke"], "unknown method 'reptile'"),
        (["reproduce", "--budget", "huge"], "unknown budget 'huge'"),
        (["reproduce", "--budget", "smoke", "--seeds", "0"], "at least 1"),
        (["report", "does-not-exist.json"], "no results file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    if argv[0] == "reproduce":
        argv = argv + ["--out", str(out), "--work-dir", str(tmp_path / "w")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_file_in_place_of_output_folder_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(["reproduce", "--budget", "smoke", "--methods", "maml", "--out", str(blocker / "x")])
        == 2
    )
    assert "not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_reproduction_of_the_maml_row_writes_table_and_json(tmp_path):
    out = tmp_path / "x"
    cmd = [
        sys.executable,
        "-m",
        "hsmlbench.cli",
        "reproduce",
        "--tables",
        "T1",
        "--methods",
        "maml",
        "--budget",
        "smoke",
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path / "w"),
        "--quiet",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    data = json.loads((out / "T1.json").read_text())
    assert {(r["method"], r["setting"]) for r in data["rows"]} == {
        ("maml", "5-shot"),
        ("maml", "10-shot"),
    }
    for row in data["rows"]:
        assert ROW_FIELDS <= row.keys() and len(row["per_task"]) == row["n_tasks"] == 200
    markdown = (out / "T1.md").read_text()
    published = PUBLISHED[("T1", "maml", "5-shot")]
    assert "smoke" in markdown and f"{published.mean:.3f} ± {published.ci95:.3f}" in markdown
    # a second run reuses the finished jobs: same numbers, no retraining
    first = (out / "T1.json").read_text()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert json.loads((out / "T1.json").read_text())["rows"] == json.loads(first)["rows"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "--seeds", "abc"], "argument --seeds: invalid int value: 'abc'"),
        (["reproduce", "--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_malformed_arguments_are_one_line_not_the_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--help" in err, err
