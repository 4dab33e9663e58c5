import math

import pytest
import torch

from hsmlbench.domains.regression.configs import HSMLSettings
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.hsml import HSML, ClusterTree
from hsmlbench.methods.maml import MAML
from hsmlbench.seeding import task_generator


def dense_tree(tree: ClusterTree, h: torch.Tensor):
    """docs/PROTOCOL.md §3 step 2 written out task by task, cluster by cluster, with explicit
    sums."""
    ps, qs, roots = [], [], []
    k1, k2 = tree.w1.shape[0], tree.w2.shape[1]
    for hi in h:
        logits = torch.stack(
            [-((hi - tree.centres[k]) ** 2).sum() / (2 * tree.sigma) for k in range(k1)]
        )
        p = torch.exp(logits - logits.max())
        p = p / p.sum()
        nodes1 = [p[k] * torch.tanh(hi @ tree.w1[k] + tree.b1[k]) for k in range(k1)]
        q = torch.zeros(k1, k2, dtype=h.dtype)
        for k in range(k1):
            scores = torch.stack([nodes1[k] @ tree.w2[:, j] + tree.b2[j] for j in range(k2)])
            q[k] = torch.softmax(scores, 0)
        nodes2 = [
            sum(q[k, j] * torch.tanh(nodes1[k] @ tree.u[j] + tree.ub[j]) for k in range(k1))
            for j in range(k2)
        ]
        roots.append(sum(torch.tanh(n @ tree.r + tree.rb) for n in nodes2))
        ps.append(p)
        qs.append(q)
    return torch.stack(ps), torch.stack(qs), torch.stack(roots)


@pytest.mark.parametrize("clusters", [(4, 2), (3, 2), (10, 2)])
def test_tree_matches_dense_formula(clusters):
    torch.manual_seed(0)
    tree = ClusterTree(40, clusters, sigma=2.0, level2="code").double()
    with torch.no_grad():
        for p in (tree.b1, tree.b2, tree.ub, tree.rb):
            p.normal_()
    h = torch.randn(5, 40, dtype=torch.float64)
    for ours, reference in zip(tree(h), dense_tree(tree, h)):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_assignments_sum_to_one_and_sigma_divides_twice_sigma():
    torch.manual_seed(1)
    tree = ClusterTree(40, (4, 2), sigma=2.0, level2="code").double()
    h = torch.randn(7, 40, dtype=torch.float64)
    p, q, _ = tree(h)
    torch.testing.assert_close(p.sum(-1), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(q.sum(-1), torch.ones(7, 4, dtype=torch.float64))
    sq = ((h[:, None] - tree.centres[None]) ** 2).sum(-1)
    # log-ratio of two clusters' assignments is −(d_a − d_b)/(2σ), with σ = 2 (not σ²)
    ratio = torch.log(p[:, 0] / p[:, 1])
    torch.testing.assert_close(ratio, -(sq[:, 0] - sq[:, 1]) / (2 * 2.0))
    tree.sigma = 8.0
    p8, _, _ = tree(h)
    torch.testing.assert_close(torch.log(p8[:, 0] / p8[:, 1]), -(sq[:, 0] - sq[:, 1]) / 16.0)


def test_level2_centres_option_assigns_by_distance():
    torch.manual_seed(2)
    tree = ClusterTree(40, (4, 2), sigma=2.0, level2="centres").double()
    h = torch.randn(3, 40, dtype=torch.float64)
    p, q, root = tree(h)
    node1 = p[..., None] * torch.tanh(torch.einsum("bd,kde->bke", h, tree.w1) + tree.b1)
    d0 = ((node1 - tree.w2[:, 0]) ** 2).sum(-1)
    d1 = ((node1 - tree.w2[:, 1]) ** 2).sum(-1)
    torch.testing.assert_close(q[..., 0], torch.sigmoid(-(d0 - d1) / 4.0))
    assert root.shape == (3, 40)


def test_unknown_level2_is_a_clear_error():
    with pytest.raises(ValueError, match="level2"):
        ClusterTree(40, (4, 2), 2.0, "paper")


def test_maml_is_hsml_with_unit_gates():
    torch.manual_seed(3)
    hsml = HSML(HSMLSettings(), inner_lr=0.01, ablate_gates=True).double()
    maml = MAML(inner_lr=0.01).double()
    with torch.no_grad():
        hsml.theta0.normal_(0, 0.5)
        for target, source in zip(maml.theta0, hsml._split(hsml.theta0[None])):
            target.copy_(source[0])
    batch = sample_tasks(5, 5, 10, task_generator(0), dtype=torch.float64)
    (g_hsml,) = torch.autograd.grad(hsml.meta_loss(batch, 3)[0], [hsml.theta0])
    g_maml = torch.autograd.grad(maml.meta_loss(batch, 3)[0], list(maml.theta0))
    torch.testing.assert_close(
        g_hsml, torch.cat([g.flatten() for g in g_maml]), rtol=1e-10, atol=1e-13
    )


def test_batched_hsml_meta_gradient_equals_per_task_loop():
    torch.manual_seed(4)
    model = HSML(HSMLSettings(), inner_lr=0.01).double()
    with torch.no_grad():
        model.theta0.normal_(0, 0.5)
    batch = sample_tasks(4, 5, 10, task_generator(1), dtype=torch.float64)
    params = [p for p in model.parameters()]
    batched = torch.autograd.grad(model.meta_loss(batch, 3)[0], params, allow_unused=True)
    # Per task: the query loss of task i alone, plus ξ·L_r of that task alone; the batched
    # reconstruction loss is the mean over tasks of equal-sized per-task means.
    per_task = []
    for i in range(batch.n_tasks):
        loss, _ = model.meta_loss(batch.slice(i, i + 1), 3)
        per_task.append(loss)
    reference = torch.autograd.grad(torch.stack(per_task).mean(), params, allow_unused=True)
    for g, r in zip(batched, reference):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_assignments_are_exposed_per_task():
    model = HSML(HSMLSettings(), inner_lr=0.001)
    batch = sample_tasks(6, 5, 10, task_generator(2))
    ctx = model.task_context(batch)
    assert ctx.assignments["level1"].shape == (6, 4)
    assert ctx.assignments["level2"].shape == (6, 2)
    torch.testing.assert_close(ctx.assignments["level2"].sum(-1), torch.ones(6))
    assert math.isclose(model.gate_weight.shape[1], 1761)


def _uniform_with_bound(t, bound):
    """All values within ±bound, spread like U(−bound, bound) (std bound/√3, within 10 %)."""
    t = t.detach().flatten()
    assert t.abs().max() <= bound + 1e-7
    assert abs(t.std().item() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)


def test_authors_initialization_gives_the_distributions_of_their_code():
    from hsmlbench.domains.regression.configs import ContinualSettings
    from hsmlbench.methods.continual import ContinualHSML

    torch.manual_seed(0)
    settings = HSMLSettings()
    assert settings.init == "authors"  # the default (docs/PROTOCOL.md §3 "HSML")
    model = HSML(settings, inner_lr=0.001)
    e, d, h = settings.pair_embedding, settings.hidden, settings.hidden
    enc = model.encoder
    _uniform_with_bound(enc.embed.weight, math.sqrt(6 / (2 + e)))
    assert torch.equal(enc.embed.bias, torch.zeros(e))
    for w_ih, w_hh, b_ih, b_hh in (
        (enc.encoder.weight_ih_l0, enc.encoder.weight_hh_l0, enc.encoder.bias_ih_l0, enc.encoder.bias_hh_l0),
        (enc.decoder.weight_ih, enc.decoder.weight_hh, enc.decoder.bias_ih, enc.decoder.bias_hh),
    ):  # fmt: skip
        gates, candidate = slice(0, 2 * h), slice(2 * h, None)
        # TF1 GRUCell: one Glorot kernel [in + H, 2H] for the gates, one [in + H, H]
        _uniform_with_bound(torch.cat([w_ih[gates], w_hh[gates]], 1), math.sqrt(6 / (e + 3 * h)))
        _uniform_with_bound(
            torch.cat([w_ih[candidate], w_hh[candidate]], 1), math.sqrt(6 / (e + 2 * h))
        )
        assert torch.equal(b_ih[gates], torch.ones(2 * h))  # gate bias 1.0
        assert torch.equal(b_ih[candidate], torch.zeros(h)) and torch.equal(
            b_hh, torch.zeros(3 * h)
        )
    projection = enc.project.weight.detach()
    assert projection.abs().max() <= 2.0  # truncated at 2 std
    assert abs(projection.std().item() - 0.8796) < 0.1  # std of N(0, 1) truncated at ±2
    assert torch.equal(enc.project.bias.detach(), torch.full((e,), 0.1))
    tree = model.tree
    for bias in (tree.b1, tree.ub, tree.rb):  # one Glorot vector of length d per row
        _uniform_with_bound(bias, math.sqrt(3 / d))
    assert tree.b2.abs().max() <= math.sqrt(3 / tree.b2.numel()) and tree.b2.abs().min() > 0
    # a cluster added by HSML-D starts the same way
    grown = ContinualHSML(HSMLSettings(clusters=(2, 2)), ContinualSettings(grow=True), 0.001)
    _, _, new_bias = grown.add_cluster()
    _uniform_with_bound(new_bias, math.sqrt(3 / d))


def test_torch_initialization_is_this_projects_earlier_one():
    torch.manual_seed(0)
    model = HSML(HSMLSettings(init="torch"), inner_lr=0.001)
    for bias in (model.tree.b1, model.tree.b2, model.tree.ub, model.tree.rb):
        assert torch.equal(bias, torch.zeros_like(bias))
    hidden = HSMLSettings().hidden
    _uniform_with_bound(model.encoder.encoder.bias_ih_l0, 1 / math.sqrt(hidden))  # torch's GRU
    with pytest.raises(ValueError, match="init='tf': choose 'authors' or 'torch'"):
        HSML(HSMLSettings(init="tf"), inner_lr=0.001)
