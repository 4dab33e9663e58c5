"""ANIL against an independent head-only per-task loop, on both meta-step paths."""

import pytest
import torch

from hsmlbench.methods.registry import get_method
from hsmlbench.testing import cell_model, per_task_meta_loss, regression_batch

pytest.importorskip("hsmlbench_anil")

HEAD = 4  # (w1, b1, w2, b2, w3, b3): w3 and b3 are the head


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")


def _model(path, seed=0):
    model, _ = cell_model("anil", meta_step=path, seed=seed, dtype=torch.float64)
    model.inner_lr = 0.05  # larger steps than the protocol's: second-order terms that matter
    with torch.no_grad():  # away from the init, where the ReLUs are barely active
        for p in model.theta0:
            p.normal_(0, 0.5)
    return model


def _forward(params, x):
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(x @ w1 + b1)
    h = torch.relu(h @ w2 + b2)
    return h @ w3 + b3


def head_only_meta_loss(theta0, batch, inner_lr, steps):
    """ANIL from its definition: for each task, ``steps`` second-order SGD steps on the head
    (w3, b3) only, the body as θ0 has it; then the query MSE. Mean over tasks."""
    body, head = list(theta0[:HEAD]), list(theta0[HEAD:])
    losses = []
    for i in range(batch.n_tasks):
        task_head = head
        for _ in range(steps):
            prediction = _forward(body + task_head, batch.x_support[i])
            support = ((prediction - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(support, task_head, create_graph=True)
            task_head = [p - inner_lr * g for p, g in zip(task_head, grads)]
        prediction = _forward(body + task_head, batch.x_query[i])
        losses.append(((prediction - batch.y_query[i]) ** 2).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("path", ["autograd", "fast"])
def test_meta_gradient_equals_head_only_per_task_loop(path):
    model = _model(path)
    batch = regression_batch(5, 5, 10, seed=1, dtype=torch.float64)
    params = list(model.theta0)
    loss, _ = model.meta_loss(batch, 3)
    grads = torch.autograd.grad(loss, params)
    reference = head_only_meta_loss(params, batch, model.inner_lr, 3)
    expected = torch.autograd.grad(reference, params)
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for name, g, r in zip(("w1", "b1", "w2", "b2", "w3", "b3"), grads, expected):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=name)
        assert r.abs().sum() > 0, name  # every parameter is meta-learned, the body included
    # hsmlbench.testing's reference, given the same flags, is the same loop
    helper = per_task_meta_loss(params, batch, model.inner_lr, 3, adapted=model.adapted_flags)
    torch.testing.assert_close(helper, reference, rtol=1e-12, atol=1e-12)


def test_second_order_terms_reach_the_body():
    """The body's meta-gradient includes the head steps' dependence on the body's features:
    first order (the head's inner gradients detached) gives another one, on both paths."""
    batch = regression_batch(4, 5, 10, seed=2, dtype=torch.float64)
    by_path = {}
    for path in ("autograd", "fast"):
        model = _model(path)
        model.second_order = False
        loss, _ = model.meta_loss(batch, 3)
        by_path[path] = torch.autograd.grad(loss, list(model.theta0))
        model.second_order = True
        loss, _ = model.meta_loss(batch, 3)
        second = torch.autograd.grad(loss, list(model.theta0))
        assert not torch.allclose(by_path[path][0], second[0])
    for f, a in zip(by_path["fast"], by_path["autograd"]):
        torch.testing.assert_close(f, a, rtol=1e-10, atol=1e-12)


def test_the_body_gets_no_inner_update():
    model = _model("fast")
    batch = regression_batch(4, 5, 10, seed=3, dtype=torch.float64)
    assert model.adapted_flags == (False, False, False, False, True, True)
    *_, (adapted, ctx) = model.evaluation_steps(batch, 4)  # the inner loop of evaluation
    for i, (before, after) in enumerate(zip(ctx.init_params, adapted)):
        assert torch.equal(before, after) == (i < HEAD), i
    # the fast path computes no inner gradient for the body
    grads = model.explicit_support_grads(ctx.init_params, batch, ctx)
    assert [g is None for g in grads] == [True] * HEAD + [False, False]


def test_registered_for_regression_with_its_settings():
    assert get_method("anil").domains == ("regression",)
    model, config = cell_model("anil")
    assert config.plugin_settings == {"head_layers": 1}
    assert config.inner_lr == 0.001 and config.second_order  # the protocol's, as MAML's
    loss, _ = model.meta_loss(regression_batch(4, 5, 10, seed=4), 2)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.theta0)


def test_anil_joins_t1_at_the_smoke_budget(tmp_path, capsys):
    """The whole path, as a user runs it: an installed plugin, no --plugin flag needed."""
    import json

    from hsmlbench.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--methods", "maml", "anil"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--jobs", "1", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    table = json.loads((out / "T1-extended.json").read_text())
    cells = {(c["method"], c["setting"]): c for c in table["summary"]["cells"]}
    assert cells[("anil", "5-shot")].get("published") is None  # the HSML paper has no ANIL row
    claims = {c["claim"] for c in table["summary"]["comparisons"]}
    assert claims == {f"anil better than maml ({s})" for s in ("5-shot", "10-shot")}
    assert "| ANIL" in (out / "T1-extended.md").read_text()
