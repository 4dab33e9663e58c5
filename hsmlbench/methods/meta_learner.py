"""What every method shares: a per-task initialization, the inner loop, the meta-loss
(docs/PROTOCOL.md §3 "Meta-training", "Evaluation").

A method only says how it turns a task's support set into a starting point (``task_context``:
MAML expands one θ0, HSML gates it per task, MUMOMAML adds FiLM modulation; ANIL adapts only
the head). Adaptation, the meta-loss and evaluation are the same code for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hsmlbench.methods.base_learners import (
    Params,
    mlp_forward,
    mlp_mse_grads,
    mse_per_task,
    positive_mask,
)
from hsmlbench.methods.batch import TaskBatch
from hsmlbench.methods.inner_loop import adapt, check_adapted, inner_step, sgd_update
from hsmlbench.methods.meta_step import CompiledWithFallback, check_meta_step

Film = tuple[tuple[torch.Tensor, torch.Tensor], ...]


class _ClampWithFloatMask(torch.autograd.Function):
    """``g.clamp(-bound, bound)`` whose backward multiplies by a float mask instead of saving
    torch's boolean one (see ``base_learners.positive_mask`` for why)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(g)
        ctx.bound = bound
        return g.clamp(-bound, bound)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (g,) = ctx.saved_tensors
        # 1 where |g| <= bound (at exactly ±bound too, as torch's clamp), else 0
        return grad_output * (1.0 - positive_mask(g.abs() - ctx.bound)), None


def clamp_with_float_mask(g: torch.Tensor, bound: float) -> torch.Tensor:
    """Clamps each element of ``g`` to ±``bound``: the value and gradient of ``g.clamp``
    (equal as numbers; a zeroed gradient may be −0 where torch's is +0), for the fast
    meta-step's inner gradients (MUMOMAML's ±10 clamp)."""
    return _ClampWithFloatMask.apply(g, bound)


@dataclass
class TaskContext:
    """Everything a method computes from a task's support set before the inner loop.

    docs/ADDING_A_METHOD.md §2 "The contract" gives every field's shape and meaning.
    """

    init_params: Params  # per-task initialization, [T, *shape] each
    film: Film | None = None  # per-task modulation, not adapted by the inner loop
    aux_loss: torch.Tensor | None = None  # scalar added to the meta-loss (already weighted)
    assignments: dict[str, torch.Tensor] = field(default_factory=dict)  # for analysis
    # per-parameter inner learning rates, one tensor per parameter (Meta-SGD); None: inner_lr
    inner_lrs: Params | None = None
    # which parameters the inner loop adapts, one flag per parameter of init_params (ANIL: the
    # head's two); None: all. The others keep their initialization and get no inner gradient.
    adapted: tuple[bool, ...] | None = None


class MetaLearner(nn.Module):
    """Base class: subclasses implement ``task_context``."""

    def __init__(
        self,
        inner_lr: float,
        second_order: bool = True,
        inner_grad_clamp: float | None = None,
        meta_step: str = "autograd",
    ) -> None:
        super().__init__()
        self.inner_lr = inner_lr
        self.second_order = second_order
        self.inner_grad_clamp = inner_grad_clamp
        check_meta_step(meta_step)
        self.meta_step = (
            meta_step  # "autograd" (reference) or "fast"; see hsmlbench.methods.meta_step
        )
        self._compiled_explicit_meta_loss = CompiledWithFallback(
            self.explicit_meta_loss, "fast meta-step"
        )

    @property
    def compile_meta_step(self) -> bool:
        """Whether the fast meta-step may be compiled (False: it runs eagerly, same math)."""
        return self._compiled_explicit_meta_loss.allowed

    @compile_meta_step.setter
    def compile_meta_step(self, allowed: bool) -> None:
        self._compiled_explicit_meta_loss.allowed = allowed

    @property
    def meta_step_called(self) -> bool:
        """Whether this process has computed a meta-step yet."""
        return self.meta_step == "autograd" or self._compiled_explicit_meta_loss.state != (
            "not called yet"
        )

    @property
    def meta_step_implementation(self) -> str:
        """What computed the meta-step: "autograd", "fast, compiled" or "fast, eager (why)"."""
        if self.meta_step == "autograd":
            return "autograd"
        return f"fast, {self._compiled_explicit_meta_loss.state}"

    def task_context(self, batch: TaskBatch) -> TaskContext:
        raise NotImplementedError

    def predict(self, params: Params, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        """The base learner's forward over per-task parameters: x [T, N, in] → [T, N, out].

        A method with its own functional base learner (MT-Net's transformation layers, BMAML's
        particles averaged) overrides it; the meta-learned parts that the inner loop never
        changes are then the method's own modules, not entries of ``params``."""
        return mlp_forward(params, x, ctx.film)

    def support_loss(self, params: Params, batch: TaskBatch, ctx: TaskContext) -> torch.Tensor:
        """The inner loop's per-task objective [T], differentiated by every inner step.

        Default: ``task_loss`` of ``predict`` on the support set. BMAML overrides it with each
        particle's own negative log-posterior (summed over particles, so each particle's
        gradient is its own)."""
        return self.task_loss(self.predict(params, batch.x_support, ctx), batch.y_support)

    def inner_update(
        self, params: Params, grads: tuple[torch.Tensor | None, ...], lrs, ctx: TaskContext
    ) -> Params:
        """One inner step from the support gradients (None: a parameter not adapted, kept).

        Default: plain SGD, θ ← θ − α·g (``inner_loop.sgd_update``), on both meta-step paths and
        in evaluation. BMAML overrides it with a Stein variational step across its particles."""
        return sgd_update(params, grads, lrs)

    @classmethod
    def supports_fast_meta_step(cls) -> bool:
        """Whether the fast meta-step computes this method's meta-gradient exactly: its inner
        gradients come from ``explicit_support_grads``, which by default is the plain MLP's MSE
        backward, so a method that changes ``predict``, ``support_loss`` or ``task_loss`` must
        override it too (or register with ``meta_steps=("autograd",)``)."""
        changed = any(
            getattr(cls, hook) is not getattr(MetaLearner, hook)
            for hook in ("predict", "support_loss", "task_loss")
        )
        return not changed or cls.explicit_support_grads is not MetaLearner.explicit_support_grads

    def task_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-task loss [T] (regression: MSE). Image methods override it (Σ CE / K)."""
        return mse_per_task(prediction, target)

    def query_metric(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-task evaluation metric [T] (regression: MSE; image methods: accuracy)."""
        return self.task_loss(prediction, target)

    def _support_loss(self, batch: TaskBatch, ctx: TaskContext):
        return lambda params: self.support_loss(params, batch, ctx)

    def _inner_update(self, ctx: TaskContext):
        return lambda params, grads, lrs: self.inner_update(params, grads, lrs, ctx)

    def meta_loss(self, batch: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean post-adaptation query MSE over the meta-batch (+ the method's auxiliary loss),
        by the model's ``meta_step`` path (both give the same meta-gradient).

        Returns ``(loss, per_task_query_mse)``.
        """
        if self.meta_step == "fast":
            return self._compiled_explicit_meta_loss(batch, steps)
        return self.autograd_meta_loss(batch, steps)

    def explicit_support_grads(
        self, params: Params, batch: TaskBatch, ctx: TaskContext
    ) -> tuple[torch.Tensor | None, ...]:
        """Each task's support-loss gradient as explicit tensor ops (the fast path's inner loop);
        None (not computed) for the parameters ``ctx.adapted`` leaves unadapted."""
        return mlp_mse_grads(params, batch.x_support, batch.y_support, ctx.film, ctx.adapted)

    def explicit_meta_loss(self, batch: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``meta_loss`` with explicit inner-loop gradients: the same value and, differentiated
        once, the same second-order meta-gradient as ``autograd_meta_loss`` (tested), but a
        first-order graph that ``torch.compile`` can compile."""
        ctx = self.task_context(batch)
        params = ctx.init_params
        flags = check_adapted(ctx.adapted, len(params))
        lrs = ctx.inner_lrs or (self.inner_lr,) * len(params)
        clamp = self.inner_grad_clamp
        for _ in range(steps if any(flags) else 0):
            grads = self.explicit_support_grads(params, batch, ctx)
            # a parameter not adapted keeps its value (its gradient, if any, is ignored)
            grads = tuple(g if flag else None for g, flag in zip(grads, flags))
            if not self.second_order:
                grads = tuple(None if g is None else g.detach() for g in grads)
            if clamp is not None:
                grads = tuple(None if g is None else clamp_with_float_mask(g, clamp) for g in grads)
            params = self.inner_update(params, grads, lrs, ctx)
        query = self.task_loss(self.predict(params, batch.x_query, ctx), batch.y_query)
        loss = query.mean()
        if ctx.aux_loss is not None:
            loss = loss + ctx.aux_loss
        return loss, query

    def autograd_meta_loss(self, batch: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference meta-loss: inner steps by ``torch.autograd.grad(create_graph=True)``."""
        ctx = self.task_context(batch)
        adapted = adapt(
            ctx.init_params,
            self._support_loss(batch, ctx),
            ctx.inner_lrs or self.inner_lr,
            steps,
            second_order=self.second_order,
            grad_clamp=self.inner_grad_clamp,
            adapted=ctx.adapted,
            update=self._inner_update(ctx),
        )
        query = self.task_loss(self.predict(adapted, batch.x_query, ctx), batch.y_query)
        loss = query.mean()
        if ctx.aux_loss is not None:
            loss = loss + ctx.aux_loss
        return loss, query

    def evaluation_steps(self, batch: TaskBatch, steps: int):
        """Yields ``(params, ctx)`` before adaptation and after each of ``steps`` inner steps.

        Evaluation needs no meta-gradient, so the inner steps keep no graph (first order).
        """
        with torch.no_grad():
            ctx = self.task_context(batch)
        params = tuple(p.detach().requires_grad_(True) for p in ctx.init_params)
        support_loss = self._support_loss(batch, ctx)
        yield params, ctx
        for _ in range(steps):
            with torch.enable_grad():
                params = inner_step(
                    params,
                    support_loss,
                    ctx.inner_lrs or self.inner_lr,
                    second_order=False,
                    grad_clamp=self.inner_grad_clamp,
                    adapted=ctx.adapted,
                    update=self._inner_update(ctx),
                )
            params = tuple(p.detach().requires_grad_(True) for p in params)
            yield params, ctx

    def query_curve(self, batch: TaskBatch, steps: int) -> tuple[torch.Tensor, TaskContext]:
        """Query metric before adaptation and after each of ``steps`` steps: [T, steps + 1]."""
        curve = []
        for params, ctx in self.evaluation_steps(batch, steps):
            with torch.no_grad():
                curve.append(
                    self.query_metric(self.predict(params, batch.x_query, ctx), batch.y_query)
                )
        return torch.stack(curve, dim=1), ctx
