"""BMAML against an independent per-task loop written from the method's definition (float64):
particles as Python lists of unbatched tensors, the RBF kernel and its median-heuristic
bandwidth written out element by element."""

import math
import statistics

import pytest
import torch

from hsmlbench.methods.registry import get_method
from hsmlbench.testing import cell_model, regression_batch

pytest.importorskip("hsmlbench_bmaml")

from hsmlbench_bmaml import svgd_direction  # noqa: E402

N_TENSORS = 8  # w1, b1, w2, b2, w3, b3, log λ, log γ


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "0")


def _model(seed=0, **settings):
    settings = {"particles": 4, **settings}
    model, _ = cell_model("bmaml", seed=seed, dtype=torch.float64, settings=settings)
    model.inner_lr = 0.01
    with torch.no_grad():  # away from the init: active ReLUs, particles well apart
        for p in model.particles[:6]:
            p.normal_(0, 0.3)
        model.particles[6].normal_(0.0, 0.3)  # log λ
        model.particles[7].normal_(0.0, 0.3)  # log γ: γ near 1, steps of a sane size
    return model


# --- the reference, one task and one particle at a time ----------------------------------


def _forward(weights, x):
    h = x
    for layer in range(3):
        h = h @ weights[2 * layer] + weights[2 * layer + 1]
        if layer < 2:
            h = torch.relu(h)
    return h


def _log_posterior(s, particle, x, y):
    """log N(y; f(x), 1/γ) summed over points + log N(w; 0, 1/λ) + log Gamma(γ; a, b)
    + log Gamma(λ; a, b), with γ, λ parametrized by their logs (hence + log γ, + log λ),
    constants dropped."""
    weights, log_lambda, log_gamma = particle[:6], particle[6], particle[7]
    errors = _forward(weights, x) - y
    log_lik = (0.5 * log_gamma - 0.5 * torch.exp(log_gamma) * errors**2).sum()
    n_w = sum(w.numel() for w in weights)
    log_prior_w = 0.5 * n_w * log_lambda - 0.5 * torch.exp(log_lambda) * sum(
        (w**2).sum() for w in weights
    )
    log_prior_g = (s.a_gamma - 1) * log_gamma - s.b_gamma * torch.exp(log_gamma) + log_gamma
    log_prior_l = (s.a_lambda - 1) * log_lambda - s.b_lambda * torch.exp(log_lambda) + log_lambda
    return log_lik + log_prior_w + log_prior_g + log_prior_l


def _svgd_phi(vectors, scores, repulsion=1.0):
    """φ_i = (1/M) Σ_j [k(x_j, x_i) ∇log p(x_j) + ∇_{x_j} k(x_j, x_i)], k(a, b) =
    exp(−‖a − b‖²/h), ∇_a k(a, b) = −(2/h)(a − b) k(a, b); h = median of the M² squared
    distances (diagonal included) / log M."""
    m = len(vectors)
    sq = [[((vectors[i] - vectors[j]) ** 2).sum() for j in range(m)] for i in range(m)]
    h = statistics.median(float(d.detach()) for row in sq for d in row) / math.log(m)
    phi = []
    for i in range(m):
        total = torch.zeros_like(vectors[i])
        for j in range(m):
            k = torch.exp(-sq[j][i] / h)
            grad_k = -(2.0 / h) * (vectors[j] - vectors[i]) * k
            total = total + k * scores[j] + repulsion * grad_k
        phi.append(total / m)
    return phi


def _svgd_step(s, particles, x, y, lr, create_graph):
    """One SVGD step of one task's particles (lists of 8 unbatched tensors) on (x, y)."""
    scores = []
    for particle in particles:
        grads = torch.autograd.grad(
            _log_posterior(s, particle, x, y), particle, create_graph=create_graph
        )
        scores.append(torch.cat([g.reshape(-1) for g in grads]))
    vectors = [torch.cat([t.reshape(-1) for t in particle]) for particle in particles]
    phi = _svgd_phi(vectors, scores, s.repulsion)
    stepped = []
    for particle, direction in zip(particles, phi):
        new, offset = [], 0
        for k, t in enumerate(particle):
            scale = s.log_lr_scale if k >= 6 else 1.0
            new.append(t + lr * scale * direction[offset : offset + t.numel()].reshape(t.shape))
            offset += t.numel()
        stepped.append(new)
    return stepped


def _initial_particles(model):
    m = model.settings.particles
    return [[model.particles[k][p] for k in range(N_TENSORS)] for p in range(m)]


def _ensemble_mse(particles, x, y):
    prediction = torch.stack([_forward(p[:6], x) for p in particles]).mean(0)
    return ((prediction - y) ** 2).mean()


def reference(model, batch, steps, create_graph=True):
    """BMAML from its definition, one task at a time. Returns (chaser loss, BFA loss, [T,
    steps + 1] curve of the ensemble's query MSE)."""
    s = model.settings
    chasers, bfas, curves = [], [], []
    for i in range(batch.n_tasks):
        xs, ys, xq, yq = batch.x_support[i], batch.y_support[i], batch.x_query[i], batch.y_query[i]
        particles = _initial_particles(model)
        curve = []
        for _ in range(steps):
            curve.append(_ensemble_mse(particles, xq, yq))
            particles = _svgd_step(s, particles, xs, ys, model.inner_lr, create_graph)
        curve.append(_ensemble_mse(particles, xq, yq))
        curves.append(torch.stack(curve))
        bfas.append(curve[-1])
        # the leader: leader_steps more steps on support ∪ query, from the chaser, detached
        leader = [[t.detach().requires_grad_(True) for t in p] for p in particles]
        x_all, y_all = torch.cat([xs, xq]), torch.cat([ys, yq])
        for _ in range(s.leader_steps):
            leader = _svgd_step(s, leader, x_all, y_all, model.inner_lr, False)
        distance = sum(
            ((c - t.detach()) ** 2).sum()
            for chaser, lead in zip(particles, leader)
            for c, t in zip(chaser[:6], lead[:6])
        )
        chasers.append(distance)
    return torch.stack(chasers).mean(), torch.stack(bfas).mean(), torch.stack(curves)


# --- the tests ------------------------------------------------------------------------------


def test_svgd_direction_on_a_tiny_example_by_hand():
    """Three particles in 2-D: squared distances 1, 4, 5, so the median of the nine entries
    (three zeros on the diagonal) is 1 and h = 1/log 3, k01 = 1/3, k02 = 1/81, k12 = 1/243."""
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    score = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    phi = svgd_direction(x, score)
    log3 = math.log(3.0)
    drive0 = torch.tensor([1 + 1 / 81, 1 / 3 + 1 / 81], dtype=torch.float64)
    repel0 = 2 * log3 * torch.tensor([-1 / 3, -2 / 81], dtype=torch.float64)
    torch.testing.assert_close(phi[0, 0], (drive0 + repel0) / 3, rtol=1e-13, atol=0)
    expected = _svgd_phi(list(x[0]), list(score[0]))
    torch.testing.assert_close(phi[0], torch.stack(expected), rtol=1e-13, atol=1e-15)
    # the authors' code's repulsive term is half of SVGD's: repulsion=0.5
    half = svgd_direction(x, score, repulsion=0.5)
    torch.testing.assert_close(half[0], torch.stack(_svgd_phi(list(x[0]), list(score[0]), 0.5)))


def test_one_svgd_step_of_the_model_equals_the_hand_written_step():
    model = _model(1)
    batch = regression_batch(3, 5, 10, seed=2, dtype=torch.float64)
    ctx = model.task_context(batch)
    params = ctx.init_params
    losses = model.support_loss(params, batch, ctx)
    grads = torch.autograd.grad(losses.sum(), params)
    stepped = model.inner_update(params, grads, (model.inner_lr,) * N_TENSORS, ctx)
    for i in range(batch.n_tasks):
        expected = _svgd_step(
            model.settings,
            _initial_particles(model),
            batch.x_support[i],
            batch.y_support[i],
            model.inner_lr,
            False,
        )
        for k in range(N_TENSORS):
            got = stepped[k][i]
            want = torch.stack([expected[p][k] for p in range(model.settings.particles)])
            torch.testing.assert_close(
                got, want, rtol=1e-12, atol=1e-14, msg=f"task {i}, tensor {k}"
            )


@pytest.mark.parametrize("meta_loss", ["chaser", "bfa"])
def test_meta_loss_and_gradient_equal_the_per_task_loop(meta_loss):
    model = _model(2, meta_loss=meta_loss)
    batch = regression_batch(4, 5, 10, seed=3, dtype=torch.float64)
    loss, query = model.meta_loss(batch, 2)
    chaser, bfa, curve = reference(model, batch, 2)
    expected = chaser if meta_loss == "chaser" else bfa
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(query, curve[:, -1].detach(), rtol=1e-12, atol=0)
    params = list(model.particles)
    ours = torch.autograd.grad(loss, params)
    theirs = torch.autograd.grad(expected, params)
    names = ["w1", "b1", "w2", "b2", "w3", "b3", "log λ", "log γ"]
    for name, got, want in zip(names, ours, theirs):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13, msg=name)
        assert want.abs().sum() > 0, name  # every part of Θ0 is meta-learned


def test_evaluation_curve_equals_the_per_task_loop():
    model = _model(3)
    model.eval()
    batch = regression_batch(5, 10, 10, seed=4, dtype=torch.float64)
    curve, _ = model.query_curve(batch, 4)
    _, _, expected = reference(model, batch, 4, create_graph=False)
    torch.testing.assert_close(curve, expected.detach(), rtol=1e-12, atol=0)


def test_default_particle_count_on_one_task():
    """The default M = 10 (an even M², the median the mean of two middle values)."""
    model = _model(4, particles=10)
    batch = regression_batch(2, 5, 10, seed=5, dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 2)
    expected, _, _ = reference(model, batch, 2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    got = torch.autograd.grad(loss, model.particles[2])[0]
    want = torch.autograd.grad(expected, model.particles[2])[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_particles_start_apart_and_deterministic_given_the_seed():
    a, config = cell_model("bmaml", seed=3)
    b, _ = cell_model("bmaml", seed=3)
    for p, q in zip(a.particles, b.particles):
        assert torch.equal(p, q)
    w2 = a.particles[2]
    assert w2.shape == (10, 40, 40) and not torch.equal(w2[0], w2[1])  # independent draws
    bound = math.sqrt(6 / 80)  # the authors' init: Glorot-uniform weights
    assert w2.abs().max() <= bound and w2.abs().max() > 0.9 * bound
    assert 0 < a.particles[3].abs().max() < 0.1  # biases from N(0, 0.01²)
    protocol, _ = cell_model("bmaml", seed=3, settings={"init": "protocol"})
    assert protocol.particles[2].abs().max() <= 0.02 and protocol.particles[3].abs().max() == 0
    torch.testing.assert_close(
        a.particles[7], torch.full((10,), math.log(100.0)), atol=0.01, rtol=0
    )
    batch = regression_batch(3, 5, 10, seed=6)
    assert torch.equal(a.meta_loss(batch, 2)[0], b.meta_loss(batch, 2)[0])


def test_registered_autograd_only_with_its_settings_and_published_values(monkeypatch):
    spec = get_method("bmaml")
    assert spec.meta_steps == ("autograd",) and spec.label == "BMAML"
    assert spec.published[("T1", "5-shot")][:2] == (2.016, 0.109)
    assert spec.published[("T1", "10-shot")][:2] == (0.698, 0.054)
    monkeypatch.setenv("HSMLBENCH_META_STEP", "fast")
    model, config = cell_model("bmaml")
    assert config.meta_step == "autograd" and model.meta_step == "autograd"
    assert config.plugin_settings["particles"] == 10
    assert config.plugin_settings["meta_loss"] == "chaser"
    assert config.plugin_settings["init"] == "authors"
    assert config.inner_lr == 0.001 and config.second_order
    assert not hasattr(model, "theta0")  # the record's θ0 dead-unit analysis: None for BMAML
    with pytest.raises(Exception, match="particles"):
        cell_model("bmaml", settings={"particles": 1})


def test_bmaml_joins_t1_at_the_smoke_budget(tmp_path, capsys):
    """The whole path, as a user runs it: an installed plugin, no --plugin flag needed."""
    import json

    from hsmlbench.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", "--tables", "T1", "--budget", "smoke", "--methods", "maml", "bmaml"]
    argv += ["--settings", "5-shot", "--seeds", "1"]
    argv += ["--out", str(out), "--work-dir", str(tmp_path / "w"), "--jobs", "1", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    table = json.loads((out / "T1-extended.json").read_text())
    cells = {(c["method"], c["setting"]): c for c in table["summary"]["cells"]}
    cell = cells[("bmaml", "5-shot")]
    assert cell["published"] == 2.016 and cell["published_ci95"] == 0.109
    assert cell["published_secondary"] is True
    assert cell["meta_step"] == "autograd"
    claims = {c["claim"] for c in table["summary"]["comparisons"]}
    assert claims == {"bmaml better than maml (5-shot)"}
    markdown = (out / "T1-extended.md").read_text()
    assert "| BMAML" in markdown and "2.016" in markdown
    assert "Yao et al., ICML 2019" in markdown  # the declared source, in the notes


# --- the fast pieces against their plain formulations (float64) ------------------------------


def _random_particles(model, n_tasks, seed):
    """Per-task particles [T, M, ...] (each task's its own), and support-loss gradients."""
    generator = torch.Generator().manual_seed(seed)
    params = tuple(
        (
            p.detach() + 0.1 * torch.randn(n_tasks, *p.shape, generator=generator, dtype=p.dtype)
        ).requires_grad_(True)
        for p in model.particles
    )
    grads = tuple(
        torch.randn(p.shape, generator=generator, dtype=p.dtype).requires_grad_(True)
        for p in params
    )
    return params, grads


@pytest.mark.parametrize(
    "settings",
    [
        {"particles": 4},
        {"particles": 3},  # M² odd: the median one value
        {"particles": 10, "repulsion": 0.5, "log_lr_scale": 0.5},  # one α per coordinate
    ],
)
@pytest.mark.parametrize("score_differentiated", [True, False])
def test_svgd_step_and_its_derivative_equal_autograd_of_svgd_direction(
    settings, score_differentiated
):
    """``BMAML.inner_update`` (``_SVGDStep``, its derivative written out) against
    ``svgd_update`` (``svgd_direction`` differentiated by autograd): the stepped particles,
    and the derivatives of a random linear function of them with respect to the particles
    and to the support-loss gradients."""
    from hsmlbench_bmaml import svgd_update

    model = _model(5, **settings)
    params, grads = _random_particles(model, 3, seed=7)
    if not score_differentiated:  # a first-order step: the gradients carry no graph
        grads = tuple(g.detach() for g in grads)
    lrs = (model.inner_lr,) * N_TENSORS
    ctx = model.task_context(regression_batch(3, 5, 10, seed=1, dtype=torch.float64))
    ours = model.inner_update(params, grads, lrs, ctx)
    theirs = svgd_update(params, grads, lrs, model.settings)
    generator = torch.Generator().manual_seed(8)
    weights = [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in theirs]
    inputs = [*params, *grads] if score_differentiated else list(params)
    d_ours = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, ours)), inputs)
    d_theirs = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, theirs)), inputs)
    for k, (got, want) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, msg=f"tensor {k}")
    for k, (got, want) in enumerate(zip(d_ours, d_theirs)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13, msg=f"derivative {k}")
        assert want.abs().sum() > 0


def _plain_log_posterior(s, params, x, y):
    """The log-posterior as first written: the particles' networks by 4-D matmuls, the squared
    errors and weights by pow and sum, each term on its own."""
    weights, log_lambda, log_gamma = params[:6], params[6], params[7]
    n_tasks, n_particles = params[0].shape[:2]
    h = x.unsqueeze(1).expand(n_tasks, n_particles, *x.shape[1:])
    for layer in range(3):
        h = torch.matmul(h, weights[2 * layer]) + weights[2 * layer + 1].unsqueeze(-2)
        if layer < 2:
            h = torch.relu(h)
    sq_error = (h - y.unsqueeze(1)).pow(2).flatten(2).sum(2)
    log_likelihood = 0.5 * h.shape[2] * log_gamma - 0.5 * log_gamma.exp() * sq_error
    sq_weights = sum(w.pow(2).flatten(2).sum(2) for w in weights)
    n_weights = sum(w[0, 0].numel() for w in weights)
    log_prior_w = 0.5 * n_weights * log_lambda - 0.5 * log_lambda.exp() * sq_weights
    log_prior_gamma = s.a_gamma * log_gamma - s.b_gamma * log_gamma.exp()
    log_prior_lambda = s.a_lambda * log_lambda - s.b_lambda * log_lambda.exp()
    return log_likelihood + log_prior_w + log_prior_gamma + log_prior_lambda


def test_log_posterior_and_two_derivatives_equal_the_plain_formula():
    """The value, the gradient (the inner step's score) and a derivative of the gradient (what
    the second-order meta-gradient differentiates) of ``log_posterior``, whose networks and
    squared norms are custom autograd Functions, against the plain formula."""
    model = _model(6, particles=5)
    params, _ = _random_particles(model, 3, seed=9)
    batch = regression_batch(3, 5, 10, seed=10, dtype=torch.float64)
    generator = torch.Generator().manual_seed(11)
    results = []
    for log_posterior in (
        lambda p: model.log_posterior(p, batch.x_support, batch.y_support),
        lambda p: _plain_log_posterior(model.settings, p, batch.x_support, batch.y_support),
    ):
        value = log_posterior(params)
        grads = torch.autograd.grad(value.sum(), params, create_graph=True)
        generator.manual_seed(11)
        weights = [torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in grads]
        second = torch.autograd.grad(sum((w * g).sum() for w, g in zip(weights, grads)), params)
        results.append((value, grads, second))
    (value, grads, second), (value0, grads0, second0) = results
    torch.testing.assert_close(value, value0, rtol=1e-12, atol=0)
    for k in range(N_TENSORS):
        torch.testing.assert_close(grads[k], grads0[k], rtol=1e-12, atol=1e-12, msg=f"grad {k}")
        torch.testing.assert_close(second[k], second0[k], rtol=1e-10, atol=1e-12, msg=f"2nd {k}")
    # and the prediction alone (no squared norms), as ``predict`` uses it
    n_tasks, n_particles = params[0].shape[:2]
    h = batch.x_query.unsqueeze(1).expand(n_tasks, n_particles, 10, 1)
    for layer in range(3):
        h = torch.matmul(h, params[2 * layer]) + params[2 * layer + 1].unsqueeze(-2)
        h = torch.relu(h) if layer < 2 else h
    torch.testing.assert_close(model.particle_predictions(params, batch.x_query), h)


def test_custom_functions_pass_gradcheck_and_gradgradcheck():
    from hsmlbench_bmaml import _HalfSumOfSquares, _LinearAndHalfSquare

    generator = torch.Generator().manual_seed(12)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    linear = (rand(4, 3, 5), rand(4, 5, 6), rand(4, 6))
    assert torch.autograd.gradcheck(_LinearAndHalfSquare.apply, linear)
    assert torch.autograd.gradgradcheck(_LinearAndHalfSquare.apply, linear)
    squares = (rand(2, 3, 4, 5), rand(2, 3, 5), rand(2, 3, 1))
    assert torch.autograd.gradcheck(_HalfSumOfSquares.apply, squares)
    assert torch.autograd.gradgradcheck(_HalfSumOfSquares.apply, squares)


@pytest.mark.parametrize("particles", [3, 4, 10])
def test_median_bandwidth_is_the_median_of_the_sorted_distances(particles):
    """kthvalue/median selection against the definition: the middle value of the sorted M²
    entries, or the mean of the two middle ones (ties included)."""
    from hsmlbench_bmaml import median_bandwidth

    generator = torch.Generator().manual_seed(particles)
    sq = torch.randint(0, 5, (6, particles, particles), generator=generator).double()
    sq = sq + sq.transpose(1, 2)
    got = median_bandwidth(sq)
    for t in range(sq.shape[0]):
        values = sorted(sq[t].flatten().tolist())
        n = len(values)
        middle = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
        middle = middle if middle > 0 else 1.0
        assert got[t].item() == middle / math.log(particles)


def test_meta_gradient_with_other_settings_equals_the_per_task_loop():
    """repulsion, log_lr_scale (the log-precisions' step its own α) and leader_steps other
    than their defaults, through the whole chaser meta-loss."""
    model = _model(7, repulsion=0.5, log_lr_scale=0.5, leader_steps=2)
    batch = regression_batch(3, 5, 10, seed=13, dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 2)
    expected, _, _ = reference(model, batch, 2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    params = list(model.particles)
    for k, (got, want) in enumerate(
        zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params))
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13, msg=f"tensor {k}")
