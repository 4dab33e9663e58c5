"""Options for the departures between the paper, the authors' code and ours: each changes
exactly what it says (docs/PROTOCOL.md "Paper versus code")."""

import dataclasses

import pytest
import torch

from hsmlbench.domains.regression.configs import MUMOMAMLSettings, run_config
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.builtin import build_model
from hsmlbench.methods.mumomaml import modulate
from hsmlbench.run.training import clip_outer_gradient
from hsmlbench.seeding import task_generator


def test_modulations_bound_what_they_say():
    g = torch.Generator().manual_seed(0)
    gamma, beta = torch.randn(5, 40, generator=g) * 3, torch.randn(5, 40, generator=g)
    assert modulate(gamma, beta, "affine") == (gamma, beta)
    scale_minus_one, shift = modulate(gamma, beta, "gamma_only")
    assert torch.equal(scale_minus_one, gamma) and torch.equal(shift, torch.zeros_like(beta))
    scale_minus_one, shift = modulate(gamma, beta, "sigmoid_gate")
    scale = 1 + scale_minus_one  # what the base learner multiplies by
    torch.testing.assert_close(scale, torch.sigmoid(gamma))
    assert (scale > 0).all() and (scale < 1).all() and torch.equal(shift, torch.zeros_like(beta))


@pytest.mark.parametrize("modulation", ["gamma_only", "sigmoid_gate"])
def test_modulated_mumomaml_keeps_both_meta_step_paths_equal(modulation, monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")
    config = run_config("T1", "mumomaml", "5-shot", "smoke", meta_step="autograd")
    config = dataclasses.replace(config, mumomaml=MUMOMAMLSettings(modulation=modulation))
    torch.manual_seed(0)
    model = build_model(config).double()
    batch = sample_tasks(5, 5, 10, task_generator(1), dtype=torch.float64)
    grads = {}
    for path in ("autograd", "fast"):
        model.meta_step = path
        loss, _ = model.meta_loss(batch, 3)
        grads[path] = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    for a, f in zip(grads["autograd"], grads["fast"]):
        if a is not None:
            torch.testing.assert_close(f, a, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="modulation='film2'"):
        build_model(dataclasses.replace(config, mumomaml=MUMOMAMLSettings(modulation="film2")))


def test_any_method_can_take_mumomamls_inner_clamp():
    maml = run_config("T1", "maml", "5-shot", "smoke")
    assert build_model(maml).inner_grad_clamp is None
    assert build_model(dataclasses.replace(maml, inner_grad_clamp=10.0)).inner_grad_clamp == 10.0


def _model_with_gradients():
    torch.manual_seed(0)
    model = build_model(run_config("T1", "mumomaml", "5-shot", "smoke"))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 5
    return model


def _norm(params):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()


def test_separate_clipping_bounds_the_learner_and_the_encoder_each():
    model = _model_with_gradients()
    learner = list(model.theta0.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in learner)]
    clip_outer_gradient(model, 2.0, "separate")
    assert _norm(learner) == pytest.approx(2.0, rel=1e-5)
    assert _norm(rest) == pytest.approx(2.0, rel=1e-5)
    joint = _model_with_gradients()
    clip_outer_gradient(joint, 2.0, None)
    assert _norm(list(joint.parameters())) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="outer_clip_groups='both'"):
        clip_outer_gradient(joint, 2.0, "both")
