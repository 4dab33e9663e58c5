"""Meta-SGD against an independent per-task loop, on both meta-step paths."""

import pytest
import torch

from hsmlbench.testing import cell_model, per_task_meta_loss, regression_batch

pytest.importorskip("hsmlbench_metasgd")


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")


@pytest.mark.parametrize("path", ["autograd", "fast"])
def test_meta_gradient_equals_per_task_loop(path):
    model, _ = cell_model("metasgd", meta_step=path, seed=0, dtype=torch.float64)
    with torch.no_grad():  # away from the init, where α is uniform
        for p in model.theta0:
            p.normal_(0, 0.5)
        for a in model.alpha:
            a.uniform_(0.001, 0.009)  # inside the bound: the reference uses α as is
    batch = regression_batch(5, 5, 10, seed=1, dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 3)
    params = [*model.theta0, *model.alpha]
    grads = torch.autograd.grad(loss, params)
    # the independent reference: one task at a time, θ ← θ − α ∘ ∇L, second order
    reference = per_task_meta_loss(list(model.theta0), batch, list(model.alpha), 3)
    expected = torch.autograd.grad(reference, params)
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, expected):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_alphas_are_learned_and_part_of_the_config():
    model, config = cell_model("metasgd")
    assert config.plugin_settings == {"alpha_init": 0.001, "alpha_max": 0.01}
    batch = regression_batch(4, 5, 10, seed=2)
    loss, _ = model.meta_loss(batch, 2)
    loss.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in model.alpha)


def test_metasgd_joins_t1_at_the_smoke_budget(tmp_path, capsys):
    """The whole path, as a user runs it: an installed plugin, no --plugin flag needed."""
    import json

    from hsmlbench.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--methods", "maml", "metasgd"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--jobs", "1", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    table = json.loads((out / "T1-extended.json").read_text())
    cells = {(c["method"], c["setting"]): c for c in table["summary"]["cells"]}
    assert cells[("metasgd", "5-shot")]["published"] == 2.053  # the paper's, marked secondary
    assert cells[("metasgd", "5-shot")]["published_secondary"] is True
    claims = {c["claim"] for c in table["summary"]["comparisons"]}
    assert claims == {f"metasgd better than maml ({s})" for s in ("5-shot", "10-shot")}
    assert "| Meta-SGD" in (out / "T1-extended.md").read_text()


def test_inner_steps_use_alpha_within_its_bound():
    """α past either end of [0, alpha_max] steps as the bound: never an ascent, never a step
    that the unbounded runs diverged with; within it, α is used as learned."""
    model, _ = cell_model("metasgd")
    with torch.no_grad():
        model.alpha[2].fill_(0.003)
        model.alpha[2][0, 0], model.alpha[2][0, 1] = 6.9, -0.47
    used = model.task_context(regression_batch(2, 5, 10, seed=3)).inner_lrs[2].detach()
    assert used[0, 0] == pytest.approx(0.01) and used[0, 1] == 0.0
    assert used[1:].eq(torch.tensor(0.003)).all()
