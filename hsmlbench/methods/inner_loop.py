"""The inner loop every method shares: plain SGD on each task's support loss (docs/PROTOCOL.md §3).

Parameters carry a leading task dimension, and the support loss returns one value per task;
differentiating the sum of those losses gives each task the gradient of its own loss, so the
whole meta-batch adapts in one autograd call.

A method may adapt only some parameters (``adapted``, one flag per parameter: ANIL adapts the
head); the others keep their value through the loop and get no inner gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hsmlbench.methods.base_learners import Params

PerTaskLoss = Callable[[Params], torch.Tensor]
# (params, grads with None where not adapted, one learning rate per parameter) -> params
InnerUpdate = Callable[[Params, tuple, tuple], Params]


def inner_step(
    params: Params,
    support_loss: PerTaskLoss,
    lr: float | Params,
    *,
    second_order: bool = True,
    grad_clamp: float | None = None,
    adapted: tuple[bool, ...] | None = None,
    update: InnerUpdate | None = None,
) -> Params:
    """One SGD step θ ← θ − α·∇L_support(θ) for every task at once.

    ``lr`` is one α for every parameter, or one tensor per parameter (broadcast against it:
    Meta-SGD's learned per-parameter rates).

    ``second_order`` keeps the graph of the gradient (``create_graph``), so meta-gradients
    include the Hessian terms of full MAML; forgetting it silently gives first-order MAML
    (docs/PROTOCOL.md §5). ``grad_clamp`` clamps each gradient element to ±value (MUMOMAML).

    ``adapted``: one flag per parameter (None: all adapted). A parameter flagged False is
    returned as it is, and the support loss is differentiated with respect to the others only.

    ``update(params, grads, lrs)`` replaces the SGD step itself (``sgd_update``, the default):
    ``grads`` holds None for the parameters not adapted. BMAML's Stein step is one.
    """
    flags = check_adapted(adapted, len(params))
    chosen = [p for p, flag in zip(params, flags) if flag]
    if not chosen:
        return params
    losses = support_loss(params)
    create_graph = second_order and torch.is_grad_enabled()
    grads = torch.autograd.grad(losses.sum(), chosen, create_graph=create_graph)
    if grad_clamp is not None:
        grads = tuple(g.clamp(-grad_clamp, grad_clamp) for g in grads)
    lrs = lr if isinstance(lr, tuple) else (lr,) * len(params)
    stepped = iter(grads)
    full = tuple(next(stepped) if flag else None for flag in flags)
    return (update or sgd_update)(params, full, lrs)


def sgd_update(params: Params, grads: tuple[torch.Tensor | None, ...], lrs) -> Params:
    """θ ← θ − α·g for every parameter with a gradient; one without (None) keeps its value."""
    return tuple(p if g is None else p - a * g for p, a, g in zip(params, lrs, grads))


def check_adapted(adapted: tuple[bool, ...] | None, n_params: int) -> tuple[bool, ...]:
    """The per-parameter adaptation flags (None: every parameter adapted), checked."""
    if adapted is None:
        return (True,) * n_params
    if len(adapted) != n_params:
        raise ValueError(
            f"TaskContext.adapted has {len(adapted)} flags for {n_params} base-learner "
            "parameters (one per parameter, in init_params' order)"
        )
    return tuple(bool(flag) for flag in adapted)


def adapt(
    params: Params,
    support_loss: PerTaskLoss,
    lr: float | Params,
    steps: int,
    *,
    second_order: bool = True,
    grad_clamp: float | None = None,
    adapted: tuple[bool, ...] | None = None,
    update: InnerUpdate | None = None,
) -> Params:
    """``steps`` inner SGD steps from ``params`` (of the ``adapted`` ones; None: all)."""
    for _ in range(steps):
        params = inner_step(
            params,
            support_loss,
            lr,
            second_order=second_order,
            grad_clamp=grad_clamp,
            adapted=adapted,
            update=update,
        )
    return params
