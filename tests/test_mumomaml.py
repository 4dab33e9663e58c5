import torch

from hsmlbench.domains.regression.configs import MUMOMAMLSettings
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.base_learners import mlp_forward
from hsmlbench.methods.mumomaml import MUMOMAML
from hsmlbench.seeding import task_generator


def test_film_with_zero_gamma_and_beta_leaves_the_base_learner_unchanged():
    torch.manual_seed(0)
    model = MUMOMAML(MUMOMAMLSettings(), inner_lr=0.001)
    params = tuple(p.expand(3, *p.shape) for p in model.theta0)
    x = torch.randn(3, 7, 1)
    zeros = torch.zeros(3, 40)
    torch.testing.assert_close(
        mlp_forward(params, x, ((zeros, zeros), (zeros, zeros))), mlp_forward(params, x)
    )


def test_film_is_applied_before_the_relu():
    torch.manual_seed(1)
    model = MUMOMAML(MUMOMAMLSettings(), inner_lr=0.001)
    params = tuple(p.expand(1, *p.shape) for p in model.theta0)
    x = torch.randn(1, 4, 1)
    gamma, beta = torch.full((1, 40), 0.5), torch.full((1, 40), -100.0)
    # β = −100 before the ReLU kills the first hidden layer: output is the bias path only
    out = mlp_forward(params, x, ((gamma, beta), (torch.zeros(1, 40), torch.zeros(1, 40))))
    w1, b1, w2, b2, w3, b3 = (p[0] for p in params)
    expected = torch.relu(b2) @ w3 + b3
    torch.testing.assert_close(out[0], expected.expand(4, 1))


def test_encoder_is_not_adapted_but_receives_meta_gradients():
    torch.manual_seed(2)
    model = MUMOMAML(MUMOMAMLSettings(), inner_lr=0.01).double()
    batch = sample_tasks(4, 5, 10, task_generator(0), dtype=torch.float64)
    ctx = model.task_context(batch)
    # the inner loop adapts exactly the base parameters: nothing of the encoder is among them
    encoder_ids = {id(p) for p in model.encoder.parameters()} | {
        id(p) for p in model.film_heads.parameters()
    }
    assert not encoder_ids & {id(p) for p in ctx.init_params}
    loss, _ = model.meta_loss(batch, 3)
    grads = torch.autograd.grad(
        loss, list(model.encoder.parameters()) + list(model.film_heads.parameters())
    )
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # changing the encoder changes the adapted model: modulation reaches the query loss
    with torch.no_grad():
        for p in model.film_heads.parameters():
            p.add_(0.1)
    assert not torch.isclose(model.meta_loss(batch, 3)[0], loss)
