import torch

from hsmlbench.domains.regression.per_task_reference import per_task_maml_meta_loss
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.base_learners import mlp_forward, mse_per_task
from hsmlbench.methods.inner_loop import adapt
from hsmlbench.methods.maml import MAML
from hsmlbench.seeding import task_generator


def _model_and_batch(seed=0, n_tasks=6, steps=3):
    torch.manual_seed(seed)
    model = MAML(inner_lr=0.01).double()
    # larger weights than the paper's init so the Hessian terms are not negligible
    with torch.no_grad():
        for p in model.theta0:
            p.normal_(0, 0.5)
    batch = sample_tasks(n_tasks, 5, 10, task_generator(seed), dtype=torch.float64)
    return model, batch, steps


def test_batched_second_order_meta_gradient_equals_per_task_loop():
    model, batch, steps = _model_and_batch()
    loss, _ = model.meta_loss(batch, steps)
    batched = torch.autograd.grad(loss, list(model.theta0))
    reference_loss = per_task_maml_meta_loss(list(model.theta0), batch, model.inner_lr, steps)
    reference = torch.autograd.grad(reference_loss, list(model.theta0))
    torch.testing.assert_close(loss, reference_loss, rtol=1e-12, atol=1e-12)
    for g, r in zip(batched, reference):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_first_order_differs_from_second_order():
    """Guards against a silently first-order inner loop (docs/PROTOCOL.md §5)."""
    model, batch, steps = _model_and_batch(seed=1)
    second = torch.autograd.grad(model.meta_loss(batch, steps)[0], list(model.theta0))
    model.second_order = False
    first = torch.autograd.grad(model.meta_loss(batch, steps)[0], list(model.theta0))
    difference = max((a - b).abs().max().item() for a, b in zip(first, second))
    assert difference > 1e-6


def test_gradient_clamp_bounds_each_inner_update():
    model, batch, _ = _model_and_batch(seed=2)
    params = tuple(
        p.detach().expand(batch.n_tasks, *p.shape).clone().requires_grad_() for p in model.theta0
    )

    def support_loss(ps):
        return 1e6 * mse_per_task(mlp_forward(ps, batch.x_support), batch.y_support)

    adapted = adapt(params, support_loss, lr=1.0, steps=1, grad_clamp=10.0, second_order=False)
    for before, after in zip(params, adapted):
        assert (after - before).abs().max() <= 10.0 + 1e-9
