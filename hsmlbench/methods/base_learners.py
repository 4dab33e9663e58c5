"""Functional base learners whose parameters carry a leading task dimension (docs/PROTOCOL.md §3).

A parameter set is a tuple of tensors ``[T, *shape]``; one forward serves a whole meta-batch
with batched matmuls, so no Python loop over tasks runs on the hot path.
"""

from __future__ import annotations

import math

import torch

Params = tuple[torch.Tensor, ...]

MLP_SIZES = (1, 40, 40, 1)  # docs/PROTOCOL.md §3 "Base learner"


def mlp_shapes(sizes: tuple[int, ...] = MLP_SIZES) -> list[tuple[int, ...]]:
    """Shapes of (w1, b1, w2, b2, ...), weights stored [in, out]."""
    shapes: list[tuple[int, ...]] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def init_mlp(sizes: tuple[int, ...] = MLP_SIZES, std: float = 0.01) -> list[torch.Tensor]:
    """Truncated normal (±2 std, as TensorFlow's) weights with std 0.01 and zero biases."""
    tensors = []
    for shape in mlp_shapes(sizes):
        t = torch.zeros(shape)
        if len(shape) == 2:
            torch.nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)
        tensors.append(t)
    return tensors


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h [T, N, in] @ w [T, in, out] + b [T, out]. A layer one unit wide (the regression MLP's
    input and output) is a broadcast product, which torch.compile fuses with its neighbours,
    instead of a batched matmul call."""
    if w.shape[1] == 1:
        return torch.addcmul(b.unsqueeze(1), h, w)
    if w.shape[2] == 1:
        return (h * w.transpose(1, 2)).sum(-1, keepdim=True) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), h, w)


def _linear_backward(
    h: torch.Tensor,
    w: torch.Tensor,
    delta: torch.Tensor,
    need_input_grad: bool,
    need_weight_grad: bool = True,
    need_bias_grad: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``_linear`` given d(loss)/d(output) ``delta`` [T, N, out]: (dw, db, dh),
    each None where not needed (not computed)."""
    dw = None
    if need_weight_grad:
        if w.shape[1] == 1:
            dw = (h * delta).sum(1, keepdim=True)
        elif w.shape[2] == 1:
            dw = (h * delta).sum(1).unsqueeze(-1)
        else:
            dw = torch.bmm(h.transpose(1, 2), delta)
    dh = None
    if need_input_grad:
        dh = delta * w.transpose(1, 2) if w.shape[2] == 1 else torch.bmm(delta, w.transpose(1, 2))
    return dw, delta.sum(1) if need_bias_grad else None, dh


def _mlp_layers(
    params: Params, x: torch.Tensor, film: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Output, each layer's input, and each hidden layer's pre-ReLU value (after FiLM)."""
    n_layers = len(params) // 2
    layer_inputs, pre_activations = [], []
    h = x
    for layer in range(n_layers):
        w, b = params[2 * layer], params[2 * layer + 1]
        layer_inputs.append(h)
        h = _linear(h, w, b)
        if layer < n_layers - 1:
            if film is not None:
                gamma, beta = film[layer]
                h = torch.addcmul(beta.unsqueeze(1), h, 1.0 + gamma.unsqueeze(1))
            pre_activations.append(h)
            h = torch.relu(h)
    return h, layer_inputs, pre_activations


def mlp_forward(
    params: Params,
    x: torch.Tensor,
    film: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
) -> torch.Tensor:
    """ReLU MLP over a batch of tasks: x [T, N, in] → [T, N, out].

    ``film`` optionally gives one (γ, β) pair [T, width] per hidden layer: a ← a·(1 + γ) + β
    after the linear map and before the ReLU (MUMOMAML, docs/PROTOCOL.md §3).
    """
    return _mlp_layers(params, x, film)[0]


def mlp_mse_grads(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    film: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
    adapted: tuple[bool, ...] | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """Each task's gradient of its support MSE, ∇θ mse_per_task(mlp_forward(θ, x, film), y),
    written as explicit tensor ops (the MLP's backward by hand).

    The fast meta-step's inner loop. Differentiating these ops once gives the full second-order
    MAML meta-gradient: ReLU's mask has zero derivative almost everywhere, exactly as in
    autograd's double backward, so the meta-step is a first-order graph that
    ``torch.compile`` can compile. Tested against ``torch.autograd.grad(create_graph=True)``.

    ``adapted`` (one flag per parameter, None: all) names the gradients wanted; the others are
    None and never computed, and the backward stops at the lowest layer with a wanted one
    (head-only adaptation differentiates the last layer only).
    """
    n_layers = len(params) // 2
    out, layer_inputs, pre_activations = _mlp_layers(params, x, film)
    # d(mean over the N·out outputs of (out − y)²)/d(out)
    delta = (out - y) * (2.0 / (out.shape[1] * out.shape[2]))
    grads: list[torch.Tensor | None] = [None] * len(params)
    wanted = adapted if adapted is not None else (True,) * len(params)
    lowest = n_layers  # the lowest layer with a wanted gradient (a loop: torch.compile-able)
    for i, flag in enumerate(wanted):
        if flag:
            lowest = i // 2
            break
    for layer in reversed(range(lowest, n_layers)):
        if layer < n_layers - 1:
            delta = delta * positive_mask(pre_activations[layer])
            if film is not None:
                delta = delta * (1.0 + film[layer][0].unsqueeze(1))
        dw, db, delta = _linear_backward(
            layer_inputs[layer],
            params[2 * layer],
            delta,
            need_input_grad=layer > lowest,
            need_weight_grad=wanted[2 * layer],
            need_bias_grad=wanted[2 * layer + 1],
        )
        grads[2 * layer], grads[2 * layer + 1] = dw, db
    return tuple(grads)


def positive_mask(x: torch.Tensor) -> torch.Tensor:
    """1.0 where ``x > 0``, else 0.0, in ``x``'s dtype, bit for bit ``(x > 0).to(x.dtype)``
    (±0, subnormals and ±inf included; tested), but with no boolean tensor in the graph.

    Why: a compiled CPU graph that saves a comparison's boolean result for its backward stores
    it at about 8 ns an element in torch 2.13 (86× a float mask's cost), and the fast meta-step
    saved ReLU's mask in every inner step. ``sign(relu(·))`` of a detached input computes the
    same 0/1 in float (it differs only at NaN, where a run has already diverged)."""
    return torch.sign(torch.relu(x.detach()))


def mse_per_task(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each task: [T, N, 1] → [T]."""
    return (prediction - target).pow(2).flatten(1).mean(1)


def glorot_uniform_(t: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-bound, bound)
