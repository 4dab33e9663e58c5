"""The method contract's hooks for a method with its own base learner, inner objective and
inner update (docs/ADDING_A_METHOD.md §2): checked against a per-task loop written by hand,
and the meta-step a method can run chosen for its cells."""

import dataclasses

import pytest
import torch
from torch import nn

from hsmlbench.domains.regression.configs import run_config
from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp, mlp_forward
from hsmlbench.methods.builtin import build_model
from hsmlbench.methods.maml import MAML
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import PluginError, get_method, register_method
from hsmlbench.testing import regression_batch

PRIOR, STEP_SCALE = 0.05, 0.5


class ScaledOutputMAML(MetaLearner):
    """A toy with every hook: its forward scales the MLP's output by a meta-learned scalar that
    the inner loop never changes; its inner objective adds an L2 prior on the first weight; its
    inner update takes half an SGD step."""

    def __init__(self, inner_lr: float) -> None:
        super().__init__(inner_lr, second_order=True)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(MLP_SIZES, std=0.3))
        self.scale = nn.Parameter(torch.tensor(1.3))

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.theta0))

    def predict(self, params, x, ctx):
        return self.scale * mlp_forward(params, x)

    def support_loss(self, params, batch, ctx):
        fit = self.task_loss(self.predict(params, batch.x_support, ctx), batch.y_support)
        return fit + PRIOR * params[0].pow(2).flatten(1).sum(1)

    def inner_update(self, params, grads, lrs, ctx):
        return tuple(
            p if g is None else p - STEP_SCALE * a * g for p, a, g in zip(params, lrs, grads)
        )


def _reference_meta_loss(model: ScaledOutputMAML, batch, steps: int, create_graph=True):
    """The toy's meta-loss one task at a time, every hook written out again by hand."""

    def forward(params, x):
        h = x
        for layer in range(len(params) // 2):
            h = h @ params[2 * layer] + params[2 * layer + 1]
            if layer < len(params) // 2 - 1:
                h = torch.relu(h)
        return model.scale * h

    losses, curves = [], []
    for i in range(batch.n_tasks):
        params = list(model.theta0)
        curve = []
        for _ in range(steps):
            curve.append(((forward(params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean())
            support = ((forward(params, batch.x_support[i]) - batch.y_support[i]) ** 2).mean()
            support = support + PRIOR * (params[0] ** 2).sum()
            grads = torch.autograd.grad(support, params, create_graph=create_graph)
            params = [p - STEP_SCALE * model.inner_lr * g for p, g in zip(params, grads)]
        query = ((forward(params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean()
        losses.append(query)
        curves.append(torch.stack([*curve, query]))
    return torch.stack(losses).mean(), torch.stack(curves)


def _toy(seed=0):
    torch.manual_seed(seed)
    return ScaledOutputMAML(inner_lr=0.05).double()


def test_hooks_give_the_per_task_references_meta_loss_and_meta_gradient():
    model = _toy()
    model.meta_step = "autograd"
    batch = regression_batch(5, 5, seed=3, dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 3)
    reference, _ = _reference_meta_loss(model, batch, 3)
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    params = list(model.parameters())
    ours = torch.autograd.grad(loss, params)
    theirs = torch.autograd.grad(reference, params)
    for got, expected in zip(ours, theirs):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)
    assert ours[-1].abs() > 0  # the scale, never adapted, is meta-learned


def test_hooks_are_used_in_evaluation():
    model = _toy(1)
    batch = regression_batch(4, 10, seed=5, dtype=torch.float64)
    curve, _ = model.query_curve(batch, 3)
    _, reference = _reference_meta_loss(model, batch, 3, create_graph=False)
    torch.testing.assert_close(curve, reference.detach(), rtol=1e-12, atol=0)


def test_fast_meta_step_support_is_detected_from_the_overridden_hooks():
    assert MAML.supports_fast_meta_step()
    assert not ScaledOutputMAML.supports_fast_meta_step()

    class WithExplicitGrads(ScaledOutputMAML):
        def explicit_support_grads(self, params, batch, ctx):
            raise NotImplementedError

    assert WithExplicitGrads.supports_fast_meta_step()


def test_a_method_registered_autograd_only_runs_its_cells_on_autograd(monkeypatch):
    register_method("toy-contract-autograd", meta_steps=("autograd",))(
        lambda config: ScaledOutputMAML(config.inner_lr)
    )
    monkeypatch.setenv("HSMLBENCH_META_STEP", "fast")
    config = run_config("T1", "toy-contract-autograd", "5-shot", "smoke")
    assert config.meta_step == "autograd"
    assert build_model(config).meta_step == "autograd"
    assert run_config("T1", "maml", "5-shot", "smoke").meta_step == "fast"  # others unchanged


def test_a_model_that_cannot_run_the_fast_step_is_refused_with_the_fix(monkeypatch):
    register_method("toy-contract-wrong")(lambda config: ScaledOutputMAML(config.inner_lr))
    config = run_config("T1", "toy-contract-wrong", "5-shot", "smoke", meta_step="fast")
    with pytest.raises(ValueError, match=r"meta_steps=\('autograd',\)"):
        build_model(config)
    autograd = dataclasses.replace(config, meta_step="autograd")
    assert build_model(autograd).meta_step == "autograd"


def test_unknown_meta_steps_are_refused():
    with pytest.raises(PluginError, match="meta_steps"):
        register_method("toy-contract-bogus", meta_steps=("quick",))
    assert get_method("maml").meta_steps == ("fast", "autograd")
