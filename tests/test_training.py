import dataclasses

import pytest
import torch

from hsmlbench.configs import Budget
from hsmlbench.domains.regression.configs import run_config
from hsmlbench.run.training import CHECKPOINT, NonFiniteLossError, train

BUDGET = Budget("test", 24, 50, 8, "unit test")


def _config(method="maml", meta_step="fast"):
    config = run_config("T1", method, "5-shot", "smoke", meta_step=meta_step)
    return dataclasses.replace(config, budget=BUDGET)


@pytest.mark.parametrize("meta_step", ["fast", "autograd"])
@pytest.mark.parametrize("method", ["maml", "hsml"])
@pytest.mark.parametrize("stop_after", [8, 13])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, method, stop_after, meta_step):
    config = _config(method, meta_step)
    full = train(config, seed=0, run_dir=tmp_path / "full", progress=False)
    train(config, seed=0, run_dir=tmp_path / "cut", progress=False, stop_after=stop_after)
    resumed = train(config, seed=0, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.losses == full.losses
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_compiled_fast_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    """As above with the fast meta-step compiled, as paper-budget runs are."""
    import hsmlbench.run.training

    monkeypatch.setattr(hsmlbench.run.training, "MIN_ITERATIONS_TO_COMPILE", 0)
    monkeypatch.setenv("HSMLBENCH_COMPILE", "1")
    config = _config("maml", "fast")
    full = train(config, seed=0, run_dir=tmp_path / "full", progress=False)
    assert full.meta_step == "fast, compiled"
    train(config, seed=0, run_dir=tmp_path / "cut", progress=False, stop_after=13)
    resumed = train(config, seed=0, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.losses == full.losses
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    train(_config(), seed=0, run_dir=tmp_path, progress=False, stop_after=8)
    with pytest.raises(ValueError, match="another run"):
        train(_config(), seed=1, run_dir=tmp_path, resume=True, progress=False)


def test_resume_without_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train(_config(), seed=0, run_dir=tmp_path, resume=True, progress=False)


def test_nan_loss_stops_with_iteration_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = _config()
    from hsmlbench.methods.maml import MAML

    original = MAML.meta_loss
    calls = {"n": 0}

    def poisoned(self, batch, steps):
        calls["n"] += 1
        loss, query = original(self, batch, steps)
        return (loss * float("nan"), query) if calls["n"] == 11 else (loss, query)

    monkeypatch.setattr(MAML, "meta_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="iteration 10") as error:
        train(config, seed=0, run_dir=tmp_path, progress=False)
    assert "last good checkpoint" in str(error.value)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert state["iteration"] == 8
    assert all(torch.isfinite(v).all() for v in state["model"].values())
