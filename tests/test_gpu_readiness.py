"""What a GPU run depends on, checked on the CPU: checkpoints resume on any device type, and
the numerics policy is applied and recorded (docs/PROTOCOL.md §6 "Numerics on a GPU")."""

from __future__ import annotations

import pytest
import torch

from hsmlbench.domains.regression.configs import run_config
from hsmlbench.results.provenance import numerics_flags
from hsmlbench.run.numerics import ALLOW_TF32_ENV, apply_numerics_policy
from hsmlbench.run.training import train


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.get_float32_matmul_precision(),
    )
    yield
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        precision,
    ) = saved
    torch.set_float32_matmul_precision(precision)


def test_a_checkpoint_resumes_on_another_device_type(tmp_path):
    """A checkpoint saved on one device resumes on another. The "meta" device stands in for a
    GPU here: reading the checkpoint onto the resuming device (as before) turned the CPU RNG
    state into a tensor ``torch.set_rng_state`` refuses ("RNG state must be a
    torch.ByteTensor"), so every retry of an interrupted GPU job failed."""
    config = run_config("T1", "maml", "5-shot", "smoke")
    train(config, 0, tmp_path, progress=False, stop_after=30)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False, map_location="cpu")
    torch.manual_seed(123)  # a different RNG state than the checkpoint's
    resumed = train(
        config, 0, tmp_path, resume=True, progress=False, stop_after=30, device=torch.device("meta")
    )
    assert next(resumed.model.parameters()).device.type == "meta"
    assert torch.equal(torch.get_rng_state(), saved["torch_rng"])  # restored, on the CPU
    assert resumed.losses == saved["losses"]


def test_the_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """Bit-identical resume, as the protocol defines it: the same config, seed and device
    give the same parameters whether or not the run was interrupted."""
    config = run_config("T1", "hsml", "5-shot", "smoke")
    whole = train(config, 0, tmp_path / "whole", progress=False)
    train(config, 0, tmp_path / "cut", progress=False, stop_after=20)
    resumed = train(config, 0, tmp_path / "cut", resume=True, progress=False)
    assert resumed.losses == whole.losses
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)


def test_full_float32_by_default_and_recorded(monkeypatch):
    monkeypatch.delenv(ALLOW_TF32_ENV, raising=False)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.benchmark = True
    assert apply_numerics_policy() == {"allow_tf32": False}
    assert numerics_flags() == {
        "matmul_allow_tf32": False,
        "cudnn_allow_tf32": False,
        "cudnn_benchmark": False,
        "cudnn_deterministic": True,
        "float32_matmul_precision": "highest",
    }


def test_tf32_only_when_asked(monkeypatch):
    monkeypatch.setenv(ALLOW_TF32_ENV, "1")
    assert apply_numerics_policy() == {"allow_tf32": True}
    flags = numerics_flags()
    assert flags["matmul_allow_tf32"] and flags["cudnn_allow_tf32"] and flags["cudnn_benchmark"]
    monkeypatch.setenv(ALLOW_TF32_ENV, "maybe")
    with pytest.raises(ValueError, match="HSMLBENCH_ALLOW_TF32='maybe'"):
        apply_numerics_policy()


def test_every_job_records_its_numerics(tmp_path, monkeypatch):
    from hsmlbench.run.jobs import Job
    from hsmlbench.run.single_job import run_job

    monkeypatch.delenv(ALLOW_TF32_ENV, raising=False)
    torch.backends.cudnn.allow_tf32 = True  # whatever was set before: the job's policy wins
    raw = run_job(Job("T1", "maml", "5-shot", 0, "smoke"), tmp_path / "o", tmp_path / "w", False)
    assert raw["provenance"]["numerics"]["cudnn_allow_tf32"] is False
    assert raw["provenance"]["numerics"]["cudnn_deterministic"] is True


def test_gpu_jobs_run_and_are_projected_one_at_a_time(monkeypatch):
    """One GPU here: its jobs one after another unless --jobs says otherwise, and the plan's
    projection uses the same number of workers as the grid (it projected min(cores, jobs))."""
    from types import SimpleNamespace

    from hsmlbench.run import executors, grid

    monkeypatch.setattr(executors, "available_cores", lambda: 16)
    gpu, cpu = SimpleNamespace(gpus=1), SimpleNamespace(gpus=0)
    assert grid.local_workers([cpu, gpu, cpu], None) == 1
    assert grid.local_workers([cpu, cpu], None) == 16
    assert grid.local_workers([gpu, gpu], 3) == 3
