"""The image learners (docs/PROTOCOL.md §4) against independent references, at tiny image sizes."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hsmlbench.configs import Budget
from hsmlbench.domains.images.base_learner import cross_entropy_sum_over_k
from hsmlbench.domains.images.configs import ImageContinualSettings, image_run_config
from hsmlbench.domains.images.continual import active_datasets, should_grow
from hsmlbench.domains.images.domain import ImageDomain
from hsmlbench.domains.images.encoders import ImageFeatureCNN
from hsmlbench.domains.images.episodes import EpisodeSampler, episode_generator
from hsmlbench.domains.images.models import ImageHSML, build_image_model
from hsmlbench.domains.images.per_task_reference import (
    per_task_image_maml_meta_loss,
    single_task_logits,
)
from hsmlbench.domains.images.synthetic import SYNTHETIC_DOMAINS, synthetic_split
from hsmlbench.methods.continual import GrowableClusterTree
from hsmlbench.methods.inner_loop import inner_step
from hsmlbench.run.training import train

SIZE = 16  # the smallest side that survives four 2×2 max-pools


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions: one intra-op thread is much faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(method, table="T3-synthetic", **changes):
    base = image_run_config(table, method, "1-shot", "smoke")
    return dataclasses.replace(base, image_size=SIZE, filters=8, **changes)


@pytest.fixture(scope="module")
def train_splits():
    return [synthetic_split(d, "train", SIZE, 20) for d in SYNTHETIC_DOMAINS]


def batch(splits, n_tasks=3, k_shot=1, n_query=3, seed=0, dtype=torch.float64):
    sampler = EpisodeSampler(splits, 5, k_shot, n_query)
    return sampler.batch(n_tasks, episode_generator(seed, 0)).to("cpu", dtype)


def model_for(method, dtype=torch.float64, seed=0, **changes):
    torch.manual_seed(seed)
    model = build_image_model(config(method, **changes)).to(dtype)
    with torch.no_grad():  # non-zero offsets so that they matter
        model.learner.bn_offsets.normal_(0, 0.3)
    return model


def test_batched_second_order_meta_gradient_equals_per_task_loop(train_splits):
    model, b = model_for("maml"), batch(train_splits)
    steps = 2
    params = [*model.theta0, model.learner.bn_offsets]
    loss, _ = model.meta_loss(b, steps)
    batched = torch.autograd.grad(loss, params)
    reference_loss = per_task_image_maml_meta_loss(
        list(model.theta0), b, model.inner_lr, steps, 1, model.learner.bn_offsets, model.learner.eps
    )
    reference = torch.autograd.grad(reference_loss, params)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-12, atol=1e-12)
    for g, r in zip(batched, reference):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-11)
    # and the second-order terms are not negligible here: first order gives another gradient
    model.second_order = False
    first = torch.autograd.grad(model.meta_loss(b, steps)[0], params)
    assert max((a - c).abs().max().item() for a, c in zip(first, batched)) > 1e-4


def test_batch_norm_uses_batch_statistics_in_eval_mode_too(train_splits):
    model, b = model_for("maml"), batch(train_splits)
    assert not list(model.buffers())  # no running statistics exist
    ctx = model.task_context(b)
    train_logits = model.predict(ctx.init_params, b.x_query, ctx)
    model.eval()
    eval_logits = model.predict(ctx.init_params, b.x_query, ctx)
    torch.testing.assert_close(eval_logits, train_logits, rtol=0, atol=0)
    # image 0's logits depend on the other images of its task (batch statistics) ...
    changed = b.x_query.clone()
    changed[0, 1:] = changed[0, 1:].flip(-1) * 0.5
    logits = model.predict(ctx.init_params, changed, ctx)
    assert (logits[0, 0] - eval_logits[0, 0]).abs().max() > 1e-3
    # ... but not on other tasks' images
    torch.testing.assert_close(logits[1:], eval_logits[1:], rtol=0, atol=0)
    theta = [p[0] for p in ctx.init_params]
    reference = single_task_logits(theta, b.x_query[0], model.learner.bn_offsets, model.learner.eps)
    torch.testing.assert_close(eval_logits[0], reference, rtol=1e-10, atol=1e-10)


def test_loss_is_sum_of_cross_entropy_over_k_for_support_and_query():
    torch.manual_seed(0)
    for k_shot, n_images in ((1, 5), (5, 25), (5, 75)):
        logits = torch.randn(2, n_images, 5, dtype=torch.float64)
        target = torch.randint(5, (2, n_images))
        ours = cross_entropy_sum_over_k(logits, target, k_shot)
        for t in range(2):
            expected = F.cross_entropy(logits[t], target[t], reduction="sum") / k_shot
            torch.testing.assert_close(ours[t], expected)
            # i.e. N·(K + ...)/K times the mean, not the mean: 5 × mean CE for 5-way K-shot support
            mean = F.cross_entropy(logits[t], target[t])
            torch.testing.assert_close(ours[t], mean * n_images / k_shot)


def test_inner_step_descends_sum_ce_over_k_with_alpha(train_splits):
    model, b = model_for("maml"), batch(train_splits)
    ctx = model.task_context(b)
    params = tuple(p.detach().clone().requires_grad_(True) for p in ctx.init_params)
    stepped = inner_step(params, model._support_loss(b, ctx), model.inner_lr, second_order=False)
    theta = [p[1].detach().clone().requires_grad_(True) for p in params]
    logits = single_task_logits(theta, b.x_support[1], model.learner.bn_offsets, model.learner.eps)
    loss = F.cross_entropy(logits, b.y_support[1], reduction="sum") / 1
    grads = torch.autograd.grad(loss, theta)
    for new, old, g in zip(stepped, theta, grads):
        torch.testing.assert_close(new[1], old - 0.01 * g)


def meta_step(model, b, steps: int, task_chunk):
    """The image domain's forward and backward of one meta-batch."""
    settings = SimpleNamespace(inner_steps_train=steps, task_chunk=task_chunk)
    return ImageDomain().meta_step(model, b, settings)


@pytest.mark.parametrize("method", ["hsml", "mumomaml"])
def test_task_chunking_gives_the_same_meta_gradient(train_splits, method):
    b = batch(train_splits, n_tasks=4)
    grads = []
    for chunk in (None, 1, 3):
        model = model_for(method)
        model.zero_grad()
        loss, accuracy = meta_step(model, b, 2, chunk)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        assert accuracy.shape == (4,)
    for other in grads[1:]:
        assert len(other) == len(grads[0])
        for a, c in zip(grads[0], other):
            torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["hsml", "mumomaml"])
def test_meta_gradient_reaches_encoder_tree_gates_and_bn_offsets(train_splits, method):
    model = model_for(method)
    loss, _ = model.meta_loss(batch(train_splits), 2)
    loss.backward()
    named = dict(model.named_parameters())
    watched = ["learner.bn_offsets"] + [
        n
        for n in named
        if n.startswith(
            (
                "representation.cnn.conv1",
                "tree.centres",
                "gate_weight",
                "encoder.convs.0",
                "encoder.film_heads.3",
            )
        )
    ]
    assert len(watched) > 1
    for name in watched:
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name


def test_mumomaml_film_is_per_channel_after_batch_norm(train_splits):
    model, b = model_for("mumomaml"), batch(train_splits)
    ctx = model.task_context(b)
    assert [tuple(g.shape) for g, _ in ctx.film] == [(3, 8)] * 4
    logits = model.predict(ctx.init_params, b.x_query, ctx)
    for t in range(3):
        theta = [p[t] for p in ctx.init_params]
        film = [(g[t], beta[t]) for g, beta in ctx.film]
        reference = single_task_logits(
            theta, b.x_query[t], model.learner.bn_offsets, model.learner.eps, film
        )
        torch.testing.assert_close(logits[t], reference, rtol=1e-10, atol=1e-10)
    assert model.inner_grad_clamp == 20.0  # the classification code (docs/PROTOCOL.md §4)


def test_hsml_has_a_gate_per_base_parameter_and_about_8_4_million_gate_weights():
    model = build_image_model(image_run_config("T3", "hsml", "1-shot", "smoke"))
    assert isinstance(model, ImageHSML) and model.learner.shapes[-2] == (800, 5)  # 32·5·5 at 84×84
    n_base = sum(model.numels)
    assert n_base == 32 * 3 * 9 + 32 + 3 * (32 * 32 * 9 + 32) + 800 * 5 + 5 == 32_645
    assert tuple(model.gate_weight.shape) == (256, n_base)  # z = [h; h_root], d = 128
    assert model.gate_weight.numel() == 8_357_120
    assert model.tree.sigma == 10.0 and model.tree.n_clusters == 4
    assert model.representation.cnn.fc1.in_features == 32 * 21 * 21  # two 3×3/2 'same' pools


def test_hsml_task_representation_feeds_features_and_one_minus_one_hot(train_splits):
    model, b = model_for("hsml"), batch(train_splits)
    seen = {}
    original = model.representation.autoencoder.forward

    def capture(items):
        seen["items"] = items
        return original(items)

    model.representation.autoencoder.forward = capture
    ctx = model.task_context(b)
    items = seen["items"]
    assert items.shape == (3, 5, 64 + 5)
    torch.testing.assert_close(items[..., 64:], 1.0 - F.one_hot(b.y_support, 5).double())
    p = ctx.assignments["level1"]
    torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=torch.float64))
    assert len(ctx.init_params) == 10  # conv/linear weights and biases; BN offsets are not gated
    assert ctx.aux_loss is not None and ctx.aux_loss > 0


def test_local_response_norm_matches_tensorflow_formula():
    cnn = ImageFeatureCNN(SIZE).double()
    x = torch.rand(2, 32, 5, 5, dtype=torch.float64) * 30
    padded = F.pad(x**2, (0, 0, 0, 0, 4, 4))
    window = sum(padded[:, i : i + 32] for i in range(9))  # depth_radius 4 on each side
    tf = x / (1.0 + 0.001 / 9.0 * window) ** 0.75
    torch.testing.assert_close(cnn.lrn(x), tf)


def test_growth_rule_on_accuracy_windows_with_cooldown():
    rule = ImageContinualSettings(grow=True)
    n = 40_000  # the paper's length: window 100, cooldown 8,000
    steady = [50.0] * 200
    assert not should_grow(steady, 200, None, rule, n)
    dropped = [50.0] * 100 + [40.0] * 100  # 40 < 0.85 · 50
    assert should_grow(dropped, 200, None, rule, n)
    assert not should_grow(dropped, 200, 150, rule, n)  # within the cooldown of an addition
    assert not should_grow([50.0] * 100 + [44.0] * 100, 200, None, rule, n)  # 44 > 42.5
    assert not should_grow(dropped + [40.0], 201, None, rule, n)  # only at window ends
    assert active_datasets(rule, 4, 0, n) == [0, 1]
    assert active_datasets(rule, 4, 15_000, n) == [0, 1, 2]
    assert active_datasets(rule, 4, 30_000, n) == [0, 1, 2, 3]
    assert active_datasets(rule, 4, 3, 8) == [0, 1, 2] and rule.window_at(8) == 2
    assert active_datasets(None, 4, 0, n) == [0, 1, 2, 3]


def test_hsml_d_uses_the_growable_tree_and_new_clusters_get_their_own_adam_group():
    model = build_image_model(config("hsml-d", table="T4-synthetic"))
    assert isinstance(model.tree, GrowableClusterTree) and model.tree.n_clusters == 2
    new = model.add_cluster()
    assert model.tree.n_clusters == 3 and len(model.optimizer_groups()) == 2
    assert {id(p) for p in model.optimizer_groups()[1]["params"]} == {id(p) for p in new}


def test_resumed_training_with_a_growth_ends_where_an_uninterrupted_run_ends(
    tmp_path, train_splits
):
    cfg = dataclasses.replace(
        config("hsml-d", table="T4-synthetic"),
        budget=Budget("test", 6, 5, 2, "test"),
        continual=ImageContinualSettings(grow=True, drop_ratio=100.0),  # grow at every window end
    )
    whole = train(cfg, 0, tmp_path / "a", progress=False, device="cpu")
    train(cfg, 0, tmp_path / "b", progress=False, stop_after=4, device="cpu")
    resumed = train(cfg, 0, tmp_path / "b", resume=True, progress=False, device="cpu")
    assert (
        [e["iteration"] for e in whole.events] == [4, 6] == [e["iteration"] for e in resumed.events]
    )
    assert whole.losses == resumed.losses
    for (name, a), (_, c) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        torch.testing.assert_close(a, c, rtol=0, atol=0, msg=name)
