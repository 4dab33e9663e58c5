"""MT-Net against an independent per-task loop written from the method's definition (float64),
and what its inner loop may and may not change."""

import pytest
import torch

from hsmlbench.methods.base_learners import MLP_SIZES, mlp_shapes
from hsmlbench.methods.registry import get_method
from hsmlbench.testing import cell_model, regression_batch

pytest.importorskip("hsmlbench_mtnet")

from hsmlbench_mtnet import UNITS  # noqa: E402

N_UNITS = sum(UNITS)  # 81 mask entries per task: 40 + 40 + 1


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")


def _model(seed=0, settings=None):
    model, _ = cell_model("mtnet", seed=seed, dtype=torch.float64, settings=settings)
    model.inner_lr = 0.05  # larger steps than the protocol's: second-order terms that matter
    with torch.no_grad():  # away from the init: active ReLUs, T not the identity, ζ spread
        for p in model.weights:
            p.normal_(0, 0.5)
        for t in model.transforms:
            t.add_(0.2 * torch.randn_like(t))
        for z in model.mask_logits:
            z.normal_(0, 1.5)
    return model


def _masks(model, uniform_row):
    """One task's masks from its 81×2 uniforms, layer by layer: the two-class Gumbel-softmax
    of (ζ, 0) with a straight-through hard sample, written out again."""
    masks, start = [], 0
    for zeta in model.mask_logits:
        u = uniform_row[start : start + zeta.numel()]
        start += zeta.numel()
        g = -torch.log(-torch.log(u + 1e-20) + 1e-20)
        logits = torch.stack([zeta + g[:, 0], g[:, 1]], dim=1) / model.temperature
        soft = torch.softmax(logits, dim=1)[:, 0]
        hard = (logits[:, 0] >= logits[:, 1]).to(soft.dtype)
        masks.append(soft + (hard - soft).detach())
    return masks


def _forward(model, params, x):
    """One task's MT-Net, unbatched: (h W + b) T per layer, ReLU after the hidden ones."""
    h = x
    for layer in range(3):
        h = (h @ params[2 * layer] + params[2 * layer + 1]) @ model.transforms[layer]
        if layer < 2:
            h = torch.relu(h)
    return h


def reference(model, batch, steps, uniform, masks_of=None, create_graph=True):
    """MT-Net from its definition, one task at a time: the task's masks; ``steps`` SGD steps
    on the support MSE that change W and b of the masked units only (W ← W − α (1 mᵀ)∘∇W,
    b ← b − α m∘∇b), T never; the query MSE before each step and after the last. Returns
    (mean final query MSE, [T, steps + 1] curve)."""
    losses, curves = [], []
    for i in range(batch.n_tasks):
        masks = masks_of(i) if masks_of else _masks(model, uniform[i])
        params = list(model.weights)
        curve = []
        for _ in range(steps):
            curve.append(
                ((_forward(model, params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean()
            )
            prediction = _forward(model, params, batch.x_support[i])
            support = ((prediction - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(support, params, create_graph=create_graph)
            params = [
                p - model.inner_lr * masks[j // 2] * g
                for j, (p, g) in enumerate(zip(params, grads))
            ]
        query = ((_forward(model, params, batch.x_query[i]) - batch.y_query[i]) ** 2).mean()
        losses.append(query)
        curves.append(torch.stack([*curve, query]))
    return torch.stack(losses).mean(), torch.stack(curves)


def _meta_parameters(model):
    return [*model.weights, *model.transforms, *model.mask_logits]


def test_meta_loss_and_gradient_equal_the_per_task_loop():
    model = _model()
    model.train()
    batch = regression_batch(5, 5, 10, seed=1, dtype=torch.float64)
    torch.manual_seed(11)
    loss, query = model.meta_loss(batch, 3)
    torch.manual_seed(11)  # the same draws, in the documented layout [T, 81, 2]
    uniform = torch.rand(batch.n_tasks, N_UNITS, 2, dtype=torch.float64)
    expected, curve = reference(model, batch, 3, uniform)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(query, curve[:, -1], rtol=1e-12, atol=0)
    params = _meta_parameters(model)
    names = ["w1", "b1", "w2", "b2", "w3", "b3", "T1", "T2", "T3", "ζ1", "ζ2", "ζ3"]
    ours = torch.autograd.grad(loss, params)
    theirs = torch.autograd.grad(expected, params)
    for name, got, want in zip(names, ours, theirs):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13, msg=name)
        assert want.abs().sum() > 0, name  # every meta-parameter is meta-learned
    # both kinds of unit occur: some adapted, some not
    flat = torch.cat(_masks(model, uniform[0]))
    assert 0 < flat.detach().sum() < N_UNITS


def test_the_meta_gradient_is_second_order():
    model = _model(1)
    batch = regression_batch(4, 5, 10, seed=2, dtype=torch.float64)
    by_order = {}
    for second_order in (True, False):
        model.second_order = second_order
        torch.manual_seed(5)
        loss, _ = model.meta_loss(batch, 3)
        by_order[second_order] = torch.autograd.grad(loss, list(model.transforms))
    assert not torch.allclose(by_order[True][0], by_order[False][0])


@pytest.mark.parametrize("test_mask", ["sample", "mode"])
def test_evaluation_curve_equals_the_per_task_loop(test_mask):
    model = _model(2, settings={"test_mask": test_mask})
    model.eval()
    batch = regression_batch(6, 10, 10, seed=3, dtype=torch.float64)
    torch.manual_seed(7)
    curve, _ = model.query_curve(batch, 4)
    torch.manual_seed(7)
    uniform = torch.rand(batch.n_tasks, N_UNITS, 2, dtype=torch.float64)
    if test_mask == "mode":  # no noise: each unit adapted iff ζ ≥ 0, the same for every task
        mode = [(z >= 0).to(z.dtype) for z in model.mask_logits]
        _, expected = reference(model, batch, 4, None, lambda i: mode, create_graph=False)
    else:
        _, expected = reference(model, batch, 4, uniform, create_graph=False)
    torch.testing.assert_close(curve, expected.detach(), rtol=1e-12, atol=0)


def test_evaluation_in_chunks_draws_what_one_batch_draws():
    """Evaluation runs in chunks of ``eval_chunk`` tasks (memory, not results): the sampled
    test masks, and so the curve, do not depend on the chunk size."""
    model = _model(5)
    model.eval()
    batch = regression_batch(7, 5, 10, seed=6, dtype=torch.float64)
    torch.manual_seed(3)
    whole, _ = model.query_curve(batch, 3)
    torch.manual_seed(3)
    parts = [model.query_curve(batch.slice(a, b), 3)[0] for a, b in ((0, 3), (3, 4), (4, 7))]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-12, atol=0)


def test_inner_loop_changes_only_masked_units_never_t_or_the_logits():
    model = _model(3)
    model.eval()
    batch = regression_batch(5, 5, 10, seed=4, dtype=torch.float64)
    kept = [p.detach().clone() for p in (*model.transforms, *model.mask_logits)]
    *_, (adapted, ctx) = model.evaluation_steps(batch, 5)
    assert len(ctx.init_params) == 6  # only W and b are the inner loop's; T and ζ are not
    assert [tuple(p.shape[1:]) for p in adapted] == mlp_shapes(MLP_SIZES)
    for before, now in zip(kept, (*model.transforms, *model.mask_logits)):
        assert torch.equal(before, now)
    n_adapted = n_kept = 0
    for layer in range(3):
        scaled = (ctx.inner_lrs[2 * layer + 1] / model.inner_lr).detach()  # [T, units]
        mask = scaled.round()  # the straight-through value is the hard 0/1 up to rounding
        torch.testing.assert_close(scaled, mask, rtol=0, atol=1e-15)
        w0, w = ctx.init_params[2 * layer], adapted[2 * layer]
        b0, b = ctx.init_params[2 * layer + 1], adapted[2 * layer + 1]
        for t in range(batch.n_tasks):
            for unit in range(mask.shape[1]):
                same = torch.equal(w0[t, :, unit], w[t, :, unit]) and torch.equal(
                    b0[t, unit], b[t, unit]
                )
                if mask[t, unit] == 0:
                    assert same, (layer, t, unit)  # exactly: an unmasked unit never moves
                    n_kept += 1
                else:
                    n_adapted += not same
    assert n_adapted > 0 and n_kept > 0


def test_with_t_the_identity_and_every_unit_adapted_mt_net_is_maml():
    """No T (the identity, as at the start) and masks saturated at 1: MAML's meta-loss and
    θ0 meta-gradient, to rounding (the straight-through mask is 1 up to an ulp)."""
    maml, _ = cell_model("maml", seed=6, dtype=torch.float64, meta_step="autograd")
    model, _ = cell_model("mtnet", seed=6, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        for mine, theirs in zip(model.weights, maml.theta0):
            mine.normal_(0, 0.5)
            theirs.copy_(mine)
        for z in model.mask_logits:
            z.fill_(60.0)  # adapted whatever the Gumbel noise (P(not) = sigmoid(-60))
    for m in (model, maml):
        m.inner_lr = 0.05
    batch = regression_batch(5, 5, 10, seed=7, dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 3)
    expected, _ = maml.meta_loss(batch, 3)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    ours = torch.autograd.grad(loss, list(model.weights))
    theirs = torch.autograd.grad(expected, list(maml.theta0))
    for got, want in zip(ours, theirs):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_t_is_a_learned_step_size_scaling_t_by_c_scales_the_inner_step_by_c_squared():
    """T_ℓ → c·T_ℓ with W_ℓ, b_ℓ → W_ℓ/c, b_ℓ/c computes the same function, but one inner step
    then changes the layer's output c² times as much (∇W picks up a factor c, and the step
    is mapped through c·T again): the meta-learner can raise the effective inner learning
    rate through T alone. Shown on the output layer (adapted alone), where it is exact. This
    is how MT-Net's training reaches the inner loop's stability limit at the protocol's
    α = 0.001 (README, "Why the quick-budget MT-Net adapts slowly")."""
    c = 3.0
    model = _model(7)
    model.eval()
    with torch.no_grad():
        model.mask_logits[0].fill_(-60.0)  # layers 1 and 2 never adapted
        model.mask_logits[1].fill_(-60.0)
        model.mask_logits[2].fill_(60.0)  # the output unit always adapted
    batch = regression_batch(4, 5, 10, seed=8, dtype=torch.float64)
    steps = {}
    for scale in (1.0, c):
        with torch.no_grad():
            model.transforms[2].mul_(scale)
            model.weights[4].div_(scale)
            model.weights[5].div_(scale)
        (p0, ctx), (p1, _) = list(model.evaluation_steps(batch, 1))
        with torch.no_grad():
            before = model.predict(p0, batch.x_query, ctx)
            steps[scale] = (before, model.predict(p1, batch.x_query, ctx) - before)
    torch.testing.assert_close(steps[c][0], steps[1.0][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(steps[c][1], c**2 * steps[1.0][1], rtol=1e-10, atol=1e-14)
    assert steps[1.0][1].abs().max() > 1e-3  # a real step, not a vanishing one


def test_masks_follow_the_logits():
    model = _model(4)
    model.train()
    with torch.no_grad():
        model.mask_logits[0].fill_(60.0)  # adapt every unit of layer 1 (sampled, any noise)
        model.mask_logits[1].fill_(-60.0)  # no unit of layer 2
    masks = model.sample_masks(50)
    assert torch.equal(masks[0], torch.ones_like(masks[0]))
    assert torch.equal(masks[1], torch.zeros_like(masks[1]))


def test_deterministic_given_the_seed():
    batch = regression_batch(4, 5, 10, seed=5)
    losses = []
    for _ in range(2):
        model, _ = cell_model("mtnet", seed=3)
        torch.manual_seed(9)
        loss, _ = model.meta_loss(batch, 5)
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    # θ0 draws what MAML's θ0 draws at the same seed (T and ζ draw nothing)
    maml, _ = cell_model("maml", seed=3)
    for a, b in zip(model.weights, maml.theta0):
        assert torch.equal(a, b)


def test_registered_autograd_only_with_its_settings_and_published_values(monkeypatch):
    spec = get_method("mtnet")
    assert spec.meta_steps == ("autograd",) and spec.label == "MT-Net"
    assert spec.published[("T1", "5-shot")][:2] == (2.435, 0.130)
    assert spec.published[("T1", "10-shot")][:2] == (0.967, 0.056)
    monkeypatch.setenv("HSMLBENCH_META_STEP", "fast")
    model, config = cell_model("mtnet")
    assert config.meta_step == "autograd" and model.meta_step == "autograd"
    assert config.plugin_settings == {"temperature": 1.0, "logit_init": 0.0, "test_mask": "sample"}
    assert config.inner_lr == 0.001 and config.second_order
    assert not hasattr(model, "theta0")  # the record's θ0 dead-unit analysis: None for MT-Net
    for t, n in zip(model.transforms, UNITS):
        assert torch.equal(t, torch.eye(n))  # T starts at the identity: MAML's forward
    with pytest.raises(Exception, match="test_mask"):
        cell_model("mtnet", settings={"test_mask": "mean"})


def test_mtnet_joins_t1_at_the_smoke_budget(tmp_path, capsys):
    """The whole path, as a user runs it: an installed plugin, no --plugin flag needed."""
    import json

    from hsmlbench.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--methods", "maml", "mtnet"]
    argv += ["--settings", "5-shot", "--seeds", "1"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--jobs", "1", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    table = json.loads((out / "T1-extended.json").read_text())
    cells = {(c["method"], c["setting"]): c for c in table["summary"]["cells"]}
    cell = cells[("mtnet", "5-shot")]
    assert cell["published"] == 2.435 and cell["published_ci95"] == 0.130
    assert cell["published_secondary"] is True
    assert cell["meta_step"] == "autograd"
    claims = {c["claim"] for c in table["summary"]["comparisons"]}
    assert claims == {"mtnet better than maml (5-shot)"}
    markdown = (out / "T1-extended.md").read_text()
    assert "| MT-Net" in markdown and "2.435" in markdown
    assert "Yao et al., ICML 2019" in markdown  # the declared source, in the notes
