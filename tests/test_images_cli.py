"""The command line on the image tables: ``data check``, ``data prepare``, and T3/T4 runs end
to end through the same grid as regression."""

import json

import pytest
import torch

from hsmlbench.cli import EXIT_NOT_RUN, main
from hsmlbench.results.store import read_raw


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These runs are small; on a shared 2-core machine one intra-op thread is much faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_data_check_on_an_empty_root_lists_every_dataset_and_how_to_get_it(tmp_path, capsys):
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for label, name in (
        ("Bird", "bird"),
        ("Texture", "texture"),
        ("Aircraft", "aircraft"),
        ("Fungi", "fungi"),
    ):
        assert f"{label} ({name}): MISSING" in out
        assert f"hsmlbench data prepare --dataset {name} --source PATH" in out
    assert "0 of 4 datasets ready" in out


def test_data_commands_report_errors_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HSMLBENCH_DATA", raising=False)
    assert main(["data", "check"]) == 1
    assert "pass --data-root PATH or set HSMLBENCH_DATA" in capsys.readouterr().err
    code = main(
        [
            "data",
            "prepare",
            "--dataset",
            "bird",
            "--source",
            str(tmp_path / "missing.tgz"),
            "--data-root",
            str(tmp_path / "root"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "no such file or folder" in err
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "--tables", "T9"], "unknown table 'T9'"),
        (["reproduce", "--tables", "T3", "--methods", "reptile"], "no method 'reptile'"),
        (["reproduce", "--tables", "T3", "--dataset", "imagenet"], "choose real or synthetic"),
        (["reproduce", "--tables", "T3", "--budget", "huge"], "unknown budget 'huge'"),
    ],
)
def test_bad_reproduce_arguments_exit_2_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out), "--work-dir", str(tmp_path / "w")]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_without_data_the_real_table_is_written_with_each_cell_not_run(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "reproduce",
        "--tables",
        "T3",
        "--methods",
        "maml",
        "hsml",
        "--budget",
        "smoke",
        "--data-root",
        str(tmp_path / "no-data"),
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path / "w"),
        "--quiet",
    ]
    assert main(argv) == EXIT_NOT_RUN
    assert "2 of 2 jobs did not run: their data is missing" in capsys.readouterr().err
    md = (out / "T3.md").read_text()
    for method in ("maml", "hsml"):
        for label, folder in (("Bird", "CUB_Bird"), ("Fungi", "FGVCx_Fungi")):
            where = tmp_path / "no-data" / "meta-dataset" / folder
            assert f"- {method} seed 0, {label} 1-shot: not run: dataset not found at {where}" in md
    for name in ("bird", "texture", "aircraft", "fungi"):
        assert f"hsmlbench data prepare --dataset {name}" in md
    assert "hsml better than maml (Bird 1-shot)" in md  # listed as not testable
    raw = json.loads((out / "runs" / "T3" / "T3-maml-1-shot-seed0-smoke.json").read_text())
    assert raw["status"] == "not run"
    assert not (tmp_path / "w").exists()  # nothing trained


@pytest.mark.slow
def test_synthetic_T3_and_T4_run_end_to_end_through_the_cli(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "w"
    common = [
        "--dataset",
        "synthetic",
        "--budget",
        "smoke",
        "--out",
        str(out),
        "--work-dir",
        str(work),
        "--quiet",
    ]
    assert main(["reproduce", "--tables", "T3", "--methods", "maml", "hsml", *common]) == 0
    assert main(["reproduce", "--tables", "T4", "--methods", "hsml-d", *common]) == 0
    for table in ("T3-synthetic", "T4-synthetic"):
        data = json.loads((out / f"{table}.json").read_text())
        assert data["data"] == "synthetic" and data["lower_is_better"] is False
        assert {r["setting"] for r in data["rows"]} == {
            "Shapes (synthetic) 1-shot",
            "Gratings (synthetic) 1-shot",
            "Dots (synthetic) 1-shot",
            "Clouds (synthetic) 1-shot",
        }
        assert all(r["n_tasks"] == 30 and len(r["per_task"]) == 30 for r in data["rows"])
        assert all(0 <= r["mean"] <= 100 for r in data["rows"])
        md = (out / f"{table}.md").read_text()
        assert md.startswith(f"# {table}: SYNTHETIC") and "not the paper's datasets" in md
        assert (out / "figures" / f"{table}_clusters.png").stat().st_size > 0
    t3 = json.loads((out / "T3-synthetic.json").read_text())
    claims = {c["claim"] for c in t3["summary"]["comparisons"]}
    assert "hsml better than maml (Shapes (synthetic) 1-shot)" in claims
    assert all(
        "published" not in cell for cell in t3["summary"]["cells"]
    )  # never compared with the paper
    assert (out / "figures" / "T3_clusters.png").exists()  # from the synthetic run, titled so
    raw = json.loads(
        (out / "runs" / "T4-synthetic" / "T4-synthetic-hsml-d-1-shot-seed0-smoke.json").read_text()
    )
    assert raw["per_dataset"]["shapes"]["per_step_mean"][-1] >= 0
    assert len(raw["train_query_accuracy"]) == 12
    # a second run reuses the finished jobs
    capsys.readouterr()
    assert main(["reproduce", "--tables", "T4", "--methods", "hsml-d", *common]) == 0
    assert "1 finished already (same config, seed, code)" in capsys.readouterr().out


@pytest.mark.slow
def test_train_then_evaluate_work_for_an_image_table(tmp_path, capsys):
    """``train`` and ``evaluate`` are the pipeline's, for every table: a synthetic T3 cell
    trains, then evaluates to one raw file holding each dataset's per-task accuracies."""
    cell = ["--table", "T3-synthetic", "--method", "maml", "--setting", "1-shot"]
    cell += ["--budget", "smoke", "--run-dir", str(tmp_path / "run")]
    assert main(["train", *cell, "--quiet"]) == 0
    out = tmp_path / "raw.json"
    assert main(["evaluate", *cell, "--out", str(out)]) == 0
    raw = read_raw(out)  # the grid's validating reader
    assert set(raw["per_dataset"]) == {"shapes", "gratings", "dots", "clouds"}
    assert all(len(c["per_task"]) == 30 for c in raw["per_dataset"].values())
    assert "Shapes (synthetic): " in capsys.readouterr().out


def test_train_of_a_real_image_table_without_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    cell = ["--table", "T3", "--method", "maml", "--setting", "1-shot", "--budget", "smoke"]
    code = main(["train", *cell, "--run-dir", str(run), "--data-root", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_NOT_RUN and len(err.splitlines()) == 1
    assert f"data root {tmp_path / 'none'} does not exist" in err
    assert not run.exists()
