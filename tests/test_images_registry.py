"""Image methods through the method registry: one name, one factory per domain; a plug-in
(the Meta-SGD example) reaches T3/T4 the way the paper's image methods do."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from hsmlbench.domains.images.configs import IMAGE_TABLES, image_run_config
from hsmlbench.domains.images.episodes import EpisodeSampler, episode_generator
from hsmlbench.domains.images.models import ImageHSML, ImageMAML, ImageMUMOMAML, build_image_model
from hsmlbench.domains.images.per_task_reference import single_task_logits
from hsmlbench.domains.images.synthetic import SYNTHETIC_DOMAINS, synthetic_split
from hsmlbench.methods.registry import PluginError, get_method, register_method


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions: one intra-op thread is much faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the registry ----------------------------------------------------------------------------


def test_a_second_domain_adds_a_factory_to_the_same_method():
    regression = register_method("two-domains-test", label="Two")(lambda config: "regression")
    images = register_method("two-domains-test", domains=("images",), label="Two")(
        lambda config: "images"
    )
    spec = get_method("two-domains-test")
    assert spec.domains == ("regression", "images")
    assert spec.factory_for("regression") is regression and spec.factory is regression
    assert spec.factory_for("images") is images
    # registering the same (name, domain, factory) again is harmless (a module imported twice)
    register_method("two-domains-test", domains=("images",), label="Two")(images)


def test_the_same_name_and_domain_twice_fails_that_name():
    from hsmlbench.methods.registry import BrokenMethodError, get_method

    register_method("images-twice-test", domains=("images",))(lambda config: "first")
    register_method("images-twice-test", domains=("images",))(lambda config: "second")
    with pytest.raises(BrokenMethodError, match="'images-twice-test' is claimed by two plug-ins"):
        get_method("images-twice-test", "images")


def test_a_second_domain_with_another_label_or_builtin_flag_is_an_error():
    register_method("label-test", label="One")(lambda config: None)
    with pytest.raises(PluginError, match="label 'Other'.*label 'One'.*one name must mean one"):
        register_method("label-test", domains=("images",), label="Other")(lambda config: None)
    register_method("builtin-flag-test", label="B", builtin=True)(lambda config: None)
    with pytest.raises(PluginError, match="the name of one of the paper's methods: refused"):
        register_method("builtin-flag-test", domains=("images",), label="B")(lambda c: None)


def test_factory_for_a_domain_the_method_lacks_names_the_ones_it_has():
    register_method("regression-only-test")(lambda config: None)
    spec = get_method("regression-only-test")
    with pytest.raises(KeyError, match="does not run on 'images' tasks; it supports: regression"):
        spec.factory_for("images")
    with pytest.raises(KeyError, match="does not run on 'speech' tasks"):
        spec.factory_for("speech")
    message = pytest.raises(KeyError, spec.factory_for, "images").value.args[0]
    assert "\n" not in message


def test_the_paper_methods_have_a_factory_and_settings_per_domain():
    from hsmlbench.domains.images.methods import (
        ImageContinualSettings,
        ImageHSMLSettings,
        ImageMUMOMAMLSettings,
    )

    for name in ("maml", "mumomaml", "hsml", "hsml-s2", "hsml-s10", "hsml-d"):
        spec = get_method(name)
        assert spec.builtin and spec.domains == ("regression", "images")
        assert spec.factory is spec.factory_for("regression")  # regression callers unchanged
        assert spec.factory_for("images").__module__ == "hsmlbench.domains.images.methods"
    assert get_method("hsml").settings_for("images") is ImageHSMLSettings
    assert get_method("mumomaml").settings_for("images") is ImageMUMOMAMLSettings
    assert get_method("hsml-d").settings_for("images") is ImageContinualSettings
    assert get_method("maml").settings_for("images") is None


@pytest.mark.parametrize(
    "table, method, cls",
    [
        ("T3-synthetic", "maml", ImageMAML),
        ("T3-synthetic", "mumomaml", ImageMUMOMAML),
        ("T3-synthetic", "hsml", ImageHSML),
        ("T4-synthetic", "hsml-d", ImageHSML),
    ],
)
def test_build_image_model_goes_through_the_registry(table, method, cls):
    config = image_run_config(table, method, "1-shot", "smoke")
    assert config.plugin_settings is None  # the paper's methods keep their own fields
    assert type(build_image_model(config)) is cls


def test_unknown_image_method_lists_what_is_registered_for_images():
    with pytest.raises(KeyError) as error:
        image_run_config("T3-synthetic", "reptile", "1-shot", "smoke")
    message = error.value.args[0]
    assert "no method 'reptile'" in message and "registered for images: " in message
    assert "hsml-d" in message and "\n" not in message
    register_method("regression-only-config-test")(lambda config: None)
    with pytest.raises(KeyError, match="it runs on regression tasks"):
        image_run_config("T3", "regression-only-config-test", "1-shot", "smoke")


def test_a_paper_method_joins_the_other_image_table_with_its_own_fields():
    maml = image_run_config("T4-synthetic", "maml", "1-shot", "smoke")
    assert maml.continual is not None and not maml.continual.grow  # T4's stream
    hsml_s2 = image_run_config("T3-synthetic", "hsml-s2", "1-shot", "smoke")
    assert hsml_s2.hsml.clusters == (2, 2) and hsml_s2.continual is None
    with pytest.raises(KeyError, match="hsml-d grows its tree on T4's stream"):
        image_run_config("T3-synthetic", "hsml-d", "1-shot", "smoke")


# --- the Meta-SGD plug-in on the image tables ------------------------------------------------


def test_metasgd_image_config_carries_its_image_settings():
    pytest.importorskip("hsmlbench_metasgd")
    t3 = image_run_config("T3-synthetic", "metasgd", "1-shot", "smoke")
    assert "metasgd" not in IMAGE_TABLES["T3-synthetic"].methods
    assert t3.plugin_settings == {"alpha_init": 0.01, "alpha_max": 0.1}
    assert t3.hsml is None and t3.mumomaml is None and t3.continual is None
    t4 = image_run_config("T4-synthetic", "metasgd", "1-shot", "smoke")
    assert t4.continual is not None and not t4.continual.grow
    spec = get_method("metasgd")
    assert spec.domains == ("regression", "images") and spec.label == "Meta-SGD"
    assert spec.default_settings() == {"alpha_init": 0.001, "alpha_max": 0.01}  # regression's


def _tiny_batch(dtype=torch.float64):
    size = 16  # the smallest side that survives four 2×2 max-pools
    splits = [synthetic_split(d, "train", size, 20) for d in SYNTHETIC_DOMAINS]
    sampler = EpisodeSampler(splits, 5, 1, 3)
    return sampler.batch(3, episode_generator(0, 0)).to("cpu", dtype), size


def test_metasgd_image_meta_gradient_equals_an_independent_per_task_loop():
    """Two second-order inner steps θ ← θ − α ∘ ∇(Σ CE / K) per task, one task at a time with
    ordinary convolutions, in float64: the same loss and the same gradients for θ0, α and
    the batch-norm offsets."""
    pytest.importorskip("hsmlbench_metasgd")
    batch, size = _tiny_batch()
    base = image_run_config("T3-synthetic", "metasgd", "1-shot", "smoke")
    config = dataclasses.replace(base, image_size=size, filters=8)
    torch.manual_seed(0)
    model = build_image_model(config).double()
    with torch.no_grad():  # away from the init, where α is uniform; inside the bound
        model.learner.bn_offsets.normal_(0, 0.3)
        for a in model.alpha:
            a.uniform_(0.002, 0.09)
    steps = 2
    loss, _, _ = model.meta_loss_and_accuracy(batch, steps)
    params = [*model.theta0, *model.alpha, model.learner.bn_offsets]
    grads = torch.autograd.grad(loss, params)

    offsets, eps, alphas = model.learner.bn_offsets, model.learner.eps, list(model.alpha)
    losses = []
    for i in range(batch.n_tasks):
        theta = list(model.theta0)
        for _ in range(steps):
            logits = single_task_logits(theta, batch.x_support[i], offsets, eps)
            support = F.cross_entropy(logits, batch.y_support[i], reduction="sum") / 1
            g = torch.autograd.grad(support, theta, create_graph=True)
            theta = [p - a * gi for p, a, gi in zip(theta, alphas, g)]
        logits = single_task_logits(theta, batch.x_query[i], offsets, eps)
        losses.append(F.cross_entropy(logits, batch.y_query[i], reduction="sum") / 1)
    reference = torch.stack(losses).mean()
    expected = torch.autograd.grad(reference, params)
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, expected):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-11)


def test_metasgd_image_inner_steps_use_alpha_within_its_bound():
    pytest.importorskip("hsmlbench_metasgd")
    batch, size = _tiny_batch(torch.float32)
    base = image_run_config("T3-synthetic", "metasgd", "1-shot", "smoke")
    model = build_image_model(dataclasses.replace(base, image_size=size, filters=8))
    with torch.no_grad():
        model.alpha[0].fill_(0.03)
        model.alpha[0].view(-1)[:2] = torch.tensor([6.9, -0.47])
    used = model.task_context(batch).inner_lrs[0].detach().view(-1)
    assert used[0] == pytest.approx(0.1) and used[1] == 0.0
    assert used[2:].eq(torch.tensor(0.03)).all()


def test_metasgd_joins_t3_synthetic_at_the_smoke_budget(tmp_path, capsys):
    """The whole path, as a user runs it: the installed plug-in, no --plugin flag."""
    pytest.importorskip("hsmlbench_metasgd")
    from hsmlbench.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T3", "--dataset", "synthetic", "--methods", "metasgd"]
    argv += ["--budget", "smoke", "--seeds", "1", "--jobs", "1", "--quiet"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--max-cell-minutes", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    raws = list((out / "runs" / "T3-synthetic").glob("*metasgd*.json"))
    assert len(raws) == 1, sorted(p.name for p in out.rglob("*.json"))
    raw = json.loads(raws[0].read_text())
    config = image_run_config("T3-synthetic", "metasgd", "1-shot", "smoke")
    assert raw["method"] == "metasgd"
    assert sorted(raw["per_dataset"]) == sorted(SYNTHETIC_DOMAINS)
    for cell in raw["per_dataset"].values():
        assert len(cell["per_task"]) == config.budget.n_test_tasks
        assert all(0.0 <= a <= 100.0 for a in cell["per_task"])
        assert len(cell["per_step_mean"]) == config.inner_steps_test + 1
