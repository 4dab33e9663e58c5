"""``hsmlbench gpu-check`` on the CPU: without CUDA it runs nothing and exits 6; with
``--allow-cpu`` its steps run in their own processes, each within its budget, and one step
out of time still leaves the others' results."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from hsmlbench.cli import main
from hsmlbench.run import gpu_check

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path of the check")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """The steps' processes on one thread each: on a loaded 2-core machine two threads per
    process only contend (the budgets are a GPU's, not a busy CPU's)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_without_cuda_it_says_so_runs_nothing_and_exits_6(tmp_path, capsys):
    assert main(["gpu-check", "--out", str(tmp_path / "check")]) == gpu_check.EXIT_NO_CUDA == 6
    assert "gpu-check: no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "check").exists()


def test_the_steps_run_and_the_report_is_written(tmp_path):
    out = tmp_path / "check"
    argv = ["gpu-check", "--out", str(out), "--allow-cpu", "--image-size", "32"]
    assert main([*argv, "--steps", "environment", "kernels", "profile"]) == 0
    report = json.loads((out / "gpu-check.json").read_text())
    outcomes = {s["step"]: s["outcome"] for s in report["steps"]}
    assert outcomes["environment"] == "passed" and outcomes["profile"] == "passed"
    assert outcomes["kernels"].startswith("skipped: the kernel benchmarks need CUDA")
    environment = json.loads((out / "environment.json").read_text())
    assert environment["numerics"]["cudnn_deterministic"] is True
    assert environment["torch"] == torch.__version__
    text = (out / "gpu-check.md").read_text()
    assert "| environment |" in text and "One HSML meta-iteration, profiled" in text


def test_a_step_out_of_time_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    short = tuple(
        dataclasses.replace(s, budget_s=1) if s.name == "profile" else s for s in gpu_check.STEPS
    )
    monkeypatch.setattr(gpu_check, "STEPS", short)
    out = tmp_path / "check"
    code = gpu_check.run_check(out, ["profile", "environment"], image_size=32, allow_cpu=True)
    assert code == gpu_check.EXIT_STEP_FAILED == 3
    outcomes = {
        s["step"]: s["outcome"] for s in json.loads((out / "gpu-check.json").read_text())["steps"]
    }
    assert outcomes == {"environment": "passed", "profile": "timed out after 1 s"}


def test_an_unknown_step_is_one_line(tmp_path, capsys):
    assert main(["gpu-check", "--out", str(tmp_path), "--steps", "warp-drive"]) == 2
    assert "--steps warp-drive: unknown; known: environment, kernels" in capsys.readouterr().err
