"""The fast meta-step against the autograd reference: same gradients, same training.

The fast path writes the inner loop's gradients as explicit tensor ops; the reference
differentiates the support loss with ``create_graph=True``. Both must give the same
second-order meta-gradient (float64, rtol 1e-10) for every regression method.
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from hsmlbench.configs import Budget
from hsmlbench.domains.regression.configs import run_config
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.base_learners import mlp_forward, mlp_mse_grads, mse_per_task
from hsmlbench.methods.builtin import build_model
from hsmlbench.methods.meta_step import META_STEP_ENV_VAR, CompiledWithFallback
from hsmlbench.methods.task_encoders import GRUAutoencoder, Recurrent, gru_cell
from hsmlbench.run.training import train
from hsmlbench.seeding import task_generator


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    """Compiling costs 20-40 s per model; the math is checked eagerly (one test compiles)."""
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")


def _random_params(sizes, n_tasks, generator):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params += [
            torch.randn(n_tasks, fan_in, fan_out, generator=generator, dtype=torch.float64),
            torch.randn(n_tasks, fan_out, generator=generator, dtype=torch.float64),
        ]
    return tuple(p.requires_grad_() for p in params)


@pytest.mark.parametrize("sizes", [(1, 40, 40, 1), (3, 7, 5, 2), (2, 6, 1)])
@pytest.mark.parametrize("with_film", [False, True])
def test_explicit_mlp_gradients_equal_autograd(sizes, with_film):
    g = torch.Generator().manual_seed(len(sizes) + with_film)
    n_tasks, n_points = 4, 6
    params = _random_params(sizes, n_tasks, g)
    x = torch.randn(n_tasks, n_points, sizes[0], generator=g, dtype=torch.float64)
    y = torch.randn(n_tasks, n_points, sizes[-1], generator=g, dtype=torch.float64)
    film = None
    if with_film:
        film = tuple(
            (
                torch.randn(n_tasks, width, generator=g, dtype=torch.float64),
                torch.randn(n_tasks, width, generator=g, dtype=torch.float64),
            )
            for width in sizes[1:-1]
        )
    loss = mse_per_task(mlp_forward(params, x, film), y).sum()
    reference = torch.autograd.grad(loss, params, create_graph=True)
    explicit = mlp_mse_grads(params, x, y, film)
    for e, r in zip(explicit, reference):
        torch.testing.assert_close(e, r, rtol=1e-12, atol=1e-12)
    # and their own derivatives (the second-order terms of the meta-gradient)
    probe = [torch.randn(r.shape, generator=g, dtype=torch.float64) for r in reference]
    second_ref = torch.autograd.grad(sum((r * p).sum() for r, p in zip(reference, probe)), params)
    second = torch.autograd.grad(sum((e * p).sum() for e, p in zip(explicit, probe)), params)
    for e, r in zip(second, second_ref):
        torch.testing.assert_close(e, r, rtol=1e-10, atol=1e-12)


def _model(method, setting, seed=0):
    table = "T2" if method.startswith("hsml-") else "T1"
    setting = "5-shot" if table == "T2" else setting  # the model does not depend on K
    config = run_config(table, method, setting, "smoke", meta_step="autograd")
    torch.manual_seed(seed)
    model = build_model(config).double()
    # larger weights than the paper's init so the Hessian terms are not negligible
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model, config


def _meta_gradients(model, batch, steps, path):
    model.meta_step = path
    loss, query = model.meta_loss(batch, steps)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss, query, dict(zip([n for n, _ in model.named_parameters()], grads))


@pytest.mark.parametrize("setting", ["5-shot", "10-shot"])
@pytest.mark.parametrize("method", ["maml", "hsml", "mumomaml", "hsml-d"])
def test_fast_meta_gradients_equal_autograd_in_float64(method, setting):
    model, config = _model(method, setting)
    if method == "hsml-d":  # after a growth event: a third first-level cluster
        model.add_cluster()
        model.double()
        assert model.tree.n_clusters == 3
    k = int(setting.split("-")[0])
    batch = sample_tasks(7, k, 10, task_generator(3), dtype=torch.float64)
    steps = config.inner_steps_train
    loss_a, query_a, grads_a = _meta_gradients(model, batch, steps, "autograd")
    loss_f, query_f, grads_f = _meta_gradients(model, batch, steps, "fast")
    assert model.meta_step_implementation.startswith("fast, eager")
    torch.testing.assert_close(loss_f, loss_a, rtol=1e-12, atol=0)
    torch.testing.assert_close(query_f, query_a, rtol=1e-12, atol=0)
    for name, reference in grads_a.items():
        if reference is None:
            assert grads_f[name] is None, name
            continue
        torch.testing.assert_close(grads_f[name], reference, rtol=1e-10, atol=1e-13, msg=name)


def test_fast_path_honours_gradient_clamp_and_first_order():
    model, config = _model("mumomaml", "5-shot", seed=1)
    batch = sample_tasks(5, 5, 10, task_generator(4), dtype=torch.float64)
    assert model.inner_grad_clamp == 10.0
    with torch.no_grad():  # big support targets: the ±10 clamp is active
        batch.y_support.mul_(50.0)
    for second_order in (True, False):
        model.second_order = second_order
        _, _, grads_a = _meta_gradients(model, batch, 3, "autograd")
        _, _, grads_f = _meta_gradients(model, batch, 3, "fast")
        for name, reference in grads_a.items():
            if reference is not None:
                torch.testing.assert_close(grads_f[name], reference, rtol=1e-10, atol=1e-13)


ADAPTED_FLAGS = [
    (False, False, False, False, True, True),  # the head only (ANIL)
    (False, False, True, False, False, True),  # a hidden weight and the output bias
    (True, False, False, False, False, False),  # the first weight: a full backward
    (False,) * 6,  # nothing: the inner loop is the identity
]


@pytest.mark.parametrize("with_film", [False, True])
@pytest.mark.parametrize("adapted", ADAPTED_FLAGS)
def test_explicit_mlp_gradients_of_adapted_parameters_only(adapted, with_film):
    """With ``adapted`` flags, the wanted gradients equal autograd's (and so do their own
    derivatives); the others are None, never computed."""
    g = torch.Generator().manual_seed(7)
    sizes, n_tasks = (1, 40, 40, 1), 3
    params = _random_params(sizes, n_tasks, g)
    x = torch.randn(n_tasks, 5, 1, generator=g, dtype=torch.float64)
    y = torch.randn(n_tasks, 5, 1, generator=g, dtype=torch.float64)
    film = None
    if with_film:
        film = tuple(
            (
                torch.randn(n_tasks, 40, generator=g, dtype=torch.float64),
                torch.randn(n_tasks, 40, generator=g, dtype=torch.float64),
            )
            for _ in range(2)
        )
    explicit = mlp_mse_grads(params, x, y, film, adapted)
    assert [e is None for e in explicit] == [not flag for flag in adapted]
    if not any(adapted):
        return
    reference = torch.autograd.grad(
        mse_per_task(mlp_forward(params, x, film), y).sum(), params, create_graph=True
    )
    wanted = [i for i, flag in enumerate(adapted) if flag]
    for i in wanted:
        torch.testing.assert_close(explicit[i], reference[i], rtol=1e-12, atol=1e-12)
    probe = {i: torch.randn(reference[i].shape, generator=g, dtype=torch.float64) for i in wanted}
    second_ref = torch.autograd.grad(sum((reference[i] * probe[i]).sum() for i in wanted), params)
    second = torch.autograd.grad(
        sum((explicit[i] * probe[i]).sum() for i in wanted), params, allow_unused=True
    )
    for e, r in zip(second, second_ref):
        e = torch.zeros_like(r) if e is None else e
        torch.testing.assert_close(e, r, rtol=1e-10, atol=1e-12)


def _with_adapted(model, adapted):
    """``model`` whose task_context flags ``adapted`` (what a method like ANIL returns)."""
    task_context = model.task_context
    model.task_context = lambda batch: dataclasses.replace(task_context(batch), adapted=adapted)
    return model


@pytest.mark.parametrize("adapted", ADAPTED_FLAGS)
def test_adapted_flags_give_one_meta_gradient_on_both_paths_and_the_reference(adapted):
    """MAML adapting only the flagged parameters: fast = autograd = the per-task loop
    (float64); the unflagged parameters leave the inner loop as they entered it."""
    from hsmlbench.testing import per_task_meta_loss

    model, _ = _model("maml", "5-shot", seed=2)
    model.inner_lr = 0.05  # steps large enough for the second-order terms to matter
    _with_adapted(model, adapted)
    batch = sample_tasks(5, 5, 10, task_generator(8), dtype=torch.float64)
    loss_a, query_a, grads_a = _meta_gradients(model, batch, 3, "autograd")
    loss_f, query_f, grads_f = _meta_gradients(model, batch, 3, "fast")
    theta0 = list(model.theta0)
    reference = per_task_meta_loss(theta0, batch, model.inner_lr, 3, adapted=adapted)
    expected = torch.autograd.grad(reference, theta0)
    torch.testing.assert_close(loss_f, loss_a, rtol=1e-12, atol=0)
    torch.testing.assert_close(query_f, query_a, rtol=1e-12, atol=0)
    torch.testing.assert_close(loss_a, reference, rtol=1e-12, atol=0)
    for name, r in zip(grads_a, expected):
        torch.testing.assert_close(grads_a[name], r, rtol=1e-10, atol=1e-13, msg=name)
        torch.testing.assert_close(grads_f[name], r, rtol=1e-10, atol=1e-13, msg=name)
    *_, (params, ctx) = model.evaluation_steps(batch, 3)
    for flag, before, after in zip(adapted, ctx.init_params, params):
        assert torch.equal(before, after) != flag


def test_adapted_flags_with_film_clamp_and_first_order():
    """MUMOMAML (FiLM, ±10 inner clamp) adapting the head only: both paths agree, second and
    first order."""
    model, _ = _model("mumomaml", "5-shot", seed=3)
    _with_adapted(model, ADAPTED_FLAGS[0])
    batch = sample_tasks(5, 5, 10, task_generator(9), dtype=torch.float64)
    with torch.no_grad():  # big support targets: the ±10 clamp is active
        batch.y_support.mul_(50.0)
    for second_order in (True, False):
        model.second_order = second_order
        _, _, grads_a = _meta_gradients(model, batch, 3, "autograd")
        _, _, grads_f = _meta_gradients(model, batch, 3, "fast")
        for name, reference in grads_a.items():
            if reference is None:
                assert grads_f[name] is None, name
                continue
            torch.testing.assert_close(grads_f[name], reference, rtol=1e-10, atol=1e-13)


def test_adapted_flags_must_name_every_parameter():
    model, _ = _model("maml", "5-shot")
    _with_adapted(model, (True, True))
    batch = sample_tasks(2, 5, 10, task_generator(10), dtype=torch.float64)
    for path in ("autograd", "fast"):
        model.meta_step = path
        with pytest.raises(ValueError, match="2 flags for 6 base-learner parameters"):
            model.meta_loss(batch, 1)


@pytest.mark.parametrize("kind, layers, bidirectional", [("gru", 1, False), ("lstm", 2, True)])
def test_recurrent_equals_torch_module_eager_and_unrolled(kind, layers, bidirectional):
    torch.manual_seed(0)
    reference = {"gru": nn.GRU, "lstm": nn.LSTM}[kind](
        3, 8, num_layers=layers, bidirectional=bidirectional, batch_first=True
    )
    torch.manual_seed(0)
    mine = Recurrent(kind, 3, 8, layers, bidirectional)
    # same initialization as torch's module, parameter for parameter
    for name, p in reference.named_parameters():
        assert torch.equal(getattr(mine, name), p), name
    x = torch.randn(4, 5, 3)
    out_ref, final_ref = reference(x)
    final_ref = final_ref if kind == "gru" else final_ref[0]
    out, final = mine(x)
    assert torch.equal(out, out_ref) and torch.equal(final, final_ref)  # the same fused kernel
    reference.double(), mine.double()
    x = x.double().requires_grad_()
    out_ref = reference(x)[0]
    out_unrolled, final_unrolled = mine.unrolled(x)
    torch.testing.assert_close(out_unrolled, out_ref, rtol=1e-12, atol=1e-14)
    probe = torch.randn_like(out_ref)
    g_ref = torch.autograd.grad((out_ref * probe).sum(), [x, *reference.parameters()])
    g_mine = torch.autograd.grad((out_unrolled * probe).sum(), [x, *mine.parameters()])
    for a, b in zip(g_mine, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_gru_cell_equals_torch():
    torch.manual_seed(0)
    cell = nn.GRUCell(3, 6).double()
    x, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    mine = gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    torch.testing.assert_close(mine, cell(x, h), rtol=1e-12, atol=1e-14)


def test_autoencoder_state_dict_keeps_torch_module_names():
    """Checkpoints written with nn.GRU load into the encoder (same parameter names)."""
    names = set(GRUAutoencoder(2, 20, 40).state_dict())
    assert {"encoder.weight_ih_l0", "encoder.bias_hh_l0", "decoder.weight_ih"} <= names


def test_evaluation_curve_does_not_depend_on_the_meta_step_path():
    model, config = _model("hsml", "5-shot")
    tasks = sample_tasks(20, 5, 10, task_generator(5), dtype=torch.float64)
    model.meta_step = "autograd"
    reference, _ = model.query_curve(tasks, 10)
    model.meta_step = "fast"
    curve, _ = model.query_curve(tasks, 10)
    assert torch.equal(curve, reference)


BUDGET = Budget("test", 100, 20, 50, "unit test")


@pytest.mark.parametrize("method", ["maml", "hsml", "mumomaml"])
def test_first_100_float32_training_losses_agree(method):
    """Same seed, both paths, float32: the losses agree to rtol 1e-5 (about 80 float32 ulps;
    measured: at most 3e-7, i.e. rounding of different operation orders, for 100 iterations)."""
    losses = {}
    for path in ("autograd", "fast"):
        config = dataclasses.replace(
            run_config("T1", method, "5-shot", "smoke", meta_step=path), budget=BUDGET
        )
        losses[path] = np.array(train(config, seed=0, progress=False).losses)
    np.testing.assert_allclose(losses["fast"], losses["autograd"], rtol=1e-5)


def test_meta_step_env_var_picks_the_path_and_rejects_nonsense(monkeypatch):
    monkeypatch.setenv(META_STEP_ENV_VAR, "autograd")
    assert run_config("T1", "maml", "5-shot", "smoke").meta_step == "autograd"
    monkeypatch.setenv(META_STEP_ENV_VAR, "fast")
    assert run_config("T1", "maml", "5-shot", "smoke").meta_step == "fast"
    monkeypatch.setenv(META_STEP_ENV_VAR, "quick")
    with pytest.raises(
        ValueError, match="HSMLBENCH_META_STEP='quick': choose one of fast, autograd"
    ):
        run_config("T1", "maml", "5-shot", "smoke")


def test_resume_refuses_a_checkpoint_of_the_other_path(tmp_path):
    budget = Budget("test", 24, 20, 8, "unit test")
    autograd = dataclasses.replace(
        run_config("T1", "maml", "5-shot", "smoke", meta_step="autograd"), budget=budget
    )
    train(autograd, seed=0, run_dir=tmp_path, progress=False, stop_after=8)
    fast = dataclasses.replace(autograd, meta_step="fast")
    with pytest.raises(ValueError, match="another run"):
        train(fast, seed=0, run_dir=tmp_path, resume=True, progress=False)


def test_failed_compile_falls_back_with_one_warning_line(monkeypatch, capsys):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "1")

    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("backend exploded\nsecond line of a long compiler trace")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    step = CompiledWithFallback(lambda x: x * 2, "test step")
    assert step(torch.tensor(3.0)) == 6.0
    assert step(torch.tensor(4.0)) == 8.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "torch.compile of the test step failed (RuntimeError: backend exploded)" in err
    assert step.state.startswith("eager (torch.compile failed")


def test_a_real_error_is_not_hidden_by_the_fallback(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "1")
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)

    def bad(x):
        raise IndexError("a bug in the step itself")

    with pytest.raises(IndexError, match="a bug in the step itself"):
        CompiledWithFallback(bad, "test step")(torch.tensor(1.0))


@pytest.mark.slow
def test_compiled_fast_meta_gradient_equals_autograd(monkeypatch):
    """The compiled graph (what real runs use) computes the same meta-gradient."""
    monkeypatch.setenv("HSMLBENCH_COMPILE", "1")
    model, config = _model("maml", "5-shot")
    batch = sample_tasks(6, 5, 10, task_generator(6), dtype=torch.float64)
    _, _, grads_a = _meta_gradients(model, batch, 5, "autograd")
    _, _, grads_f = _meta_gradients(model, batch, 5, "fast")
    assert model.meta_step_implementation == "fast, compiled"
    for name, reference in grads_a.items():
        torch.testing.assert_close(grads_f[name], reference, rtol=1e-10, atol=1e-13, msg=name)


def test_a_run_resumed_at_its_end_records_what_trained_it(tmp_path):
    """A grid killed after a job's last checkpoint resumes it with no iteration left."""
    config = dataclasses.replace(
        run_config("T1", "maml", "5-shot", "smoke", meta_step="fast"), budget=BUDGET
    )
    full = train(config, seed=0, run_dir=tmp_path, progress=False)
    assert full.meta_step == "fast, eager (run too short to repay compiling)"
    resumed = train(config, seed=0, run_dir=tmp_path, resume=True, progress=False)
    assert resumed.losses == full.losses and resumed.meta_step == full.meta_step
