"""MAML, MUMOMAML and HSML on the image base learner (docs/PROTOCOL.md §4).

They share ``hsmlbench.methods.meta_learner.MetaLearner``'s inner loop, meta-loss and evaluation
curve; the image versions only swap the base learner (``ConvLearner``), the loss (Σ CE / K) and
the metric (accuracy in %), and say how a task's support images become its initialization.
"""

from __future__ import annotations

import torch
from torch import nn

from hsmlbench.domains.images.base_learner import (
    ConvLearner,
    accuracy_percent,
    cross_entropy_sum_over_k,
)
from hsmlbench.domains.images.encoders import ImageTaskRepresentation, MUMOMAMLImageEncoder
from hsmlbench.kernels import gated_init
from hsmlbench.methods.base_learners import Params, glorot_uniform_
from hsmlbench.methods.continual import GrowableClusterTree, GrowingFirstLevel
from hsmlbench.methods.hsml import ClusterTree, tree_bias_init
from hsmlbench.methods.inner_loop import adapt
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import get_method


class ImageMetaLearner(MetaLearner):
    """A meta-learner on the conv base learner; ``k_shot`` scales the loss (Σ CE / K)."""

    def __init__(
        self,
        learner: ConvLearner,
        k_shot: int,
        inner_lr: float,
        second_order: bool = True,
        inner_grad_clamp: float | None = None,
    ) -> None:
        super().__init__(inner_lr, second_order, inner_grad_clamp)
        self.learner = learner
        self.k_shot = k_shot

    def predict(self, params: Params, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        return self.learner(params, x, ctx.film)

    def task_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_sum_over_k(prediction, target, self.k_shot)

    def query_metric(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return accuracy_percent(prediction, target)

    def meta_loss_and_accuracy(
        self, batch, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``meta_loss``, plus the post-adaptation query accuracy per task (no gradient).

        Returns ``(loss, per_task_query_loss, per_task_query_accuracy)``; HSML-D's growth rule
        watches the accuracy (docs/PROTOCOL.md §4).
        """
        ctx = self.task_context(batch)
        adapted = adapt(
            ctx.init_params,
            self._support_loss(batch, ctx),
            ctx.inner_lrs or self.inner_lr,  # per-parameter rates where a method has them
            steps,
            second_order=self.second_order,
            grad_clamp=self.inner_grad_clamp,
            adapted=ctx.adapted,
        )
        logits = self.predict(adapted, batch.x_query, ctx)
        query = self.task_loss(logits, batch.y_query)
        loss = query.mean()
        if ctx.aux_loss is not None:
            loss = loss + ctx.aux_loss
        with torch.no_grad():
            accuracy = self.query_metric(logits, batch.y_query)
        return loss, query, accuracy

    def meta_loss(self, batch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss, query, _ = self.meta_loss_and_accuracy(batch, steps)
        return loss, query


class ImageMAML(ImageMetaLearner):
    """One θ0 for every task."""

    def __init__(
        self, learner: ConvLearner, k_shot: int, inner_lr: float, second_order: bool = True
    ):
        super().__init__(learner, k_shot, inner_lr, second_order)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in learner.init_tensors())

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.theta0))


class ImageMUMOMAML(ImageMetaLearner):
    """θ0 plus per-task, per-channel FiLM of every conv block from the support images."""

    def __init__(
        self,
        learner: ConvLearner,
        settings,
        k_shot: int,
        inner_lr: float,
        second_order: bool = True,
    ):
        super().__init__(learner, k_shot, inner_lr, second_order, settings.inner_grad_clamp)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in learner.init_tensors())
        widths = tuple(shape[0] for shape in learner.shapes[0:-2:2])
        self.encoder = MUMOMAMLImageEncoder(settings.encoder_channels, settings.embedding, widths)

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(
            init_params=tuple(p.expand(n, *p.shape) for p in self.theta0),
            film=self.encoder(batch.x_support),
        )


class ImageHSML(GrowingFirstLevel, ImageMetaLearner):
    """Task representation → 4 → 2 → 1 tree → gates on every base-learner tensor → MAML.

    The tree is ``hsmlbench.methods.hsml.ClusterTree`` and the gates go through
    ``hsmlbench.kernels.gated_init`` (fused on GPU): one dense map from z = [h; h_root] (256-d)
    to all ~32.6 K base parameters, about 8.4 M gate weights at 84×84 (docs/PROTOCOL.md §4).
    """

    def __init__(
        self,
        learner: ConvLearner,
        settings,
        k_shot: int,
        inner_lr: float,
        image_size: int,
        second_order: bool = True,
        growable: bool = False,
    ):
        """``growable``: the tree's first level can gain clusters (HSML-S/D on the T4 stream use
        ``hsmlbench.methods.continual.GrowableClusterTree``; the same math as ``ClusterTree``)."""
        super().__init__(learner, k_shot, inner_lr, second_order)
        self.settings = settings
        self.shapes = learner.shapes
        self.numels = [int(torch.Size(s).numel()) for s in self.shapes]
        d = settings.hidden
        self.theta0 = nn.Parameter(torch.cat([t.flatten() for t in learner.init_tensors()]))
        self.representation = ImageTaskRepresentation(
            image_size, learner.n_way, d, settings.features, settings.feature_filters
        )
        if settings.init == "authors":
            self.representation.autoencoder.reset_parameters_like_authors()
        tree_class = GrowableClusterTree if growable else ClusterTree
        self.tree = tree_class(
            d, settings.clusters, settings.sigma, settings.level2, tree_bias_init(settings)
        )
        self.init_growth(settings.clusters[0])
        # one Glorot-uniform gate map per base tensor, zero bias (as HSML's regression gates)
        gate_weight = torch.empty(2 * d, sum(self.numels))
        for segment in gate_weight.split(self.numels, dim=1):
            glorot_uniform_(segment, 2 * d, segment.shape[1])
        self.gate_weight = nn.Parameter(gate_weight)
        self.gate_bias = nn.Parameter(torch.zeros(sum(self.numels)))

    def grow_with(self, rule, iterations: int) -> None:
        """Makes this HSML-D: ``after_iteration`` adds a first-level cluster when ``rule``
        (T4's ``ImageContinualSettings``) says so, in a run of ``iterations``."""
        self.growth_rule, self.growth_iterations = rule, iterations

    def after_iteration(self, iteration: int, accuracies: list[float], optimizer, events: list):
        """HSML-D's trigger on the query accuracy (``hsmlbench.domains.images.continual``)."""
        from hsmlbench.domains.images.continual import should_grow

        rule = getattr(self, "growth_rule", None)
        done, total = iteration + 1, getattr(self, "growth_iterations", 0)
        if rule is None or not should_grow(accuracies, done, self.last_addition, rule, total):
            return optimizer
        optimizer.add_param_group({"params": self.add_cluster()})
        self.last_addition = done
        window = rule.window_at(total)
        events.append(
            {
                "event": "cluster_added",
                "iteration": done,
                "window_accuracy": sum(accuracies[-window:]) / window,
                "previous_window_accuracy": sum(accuracies[-2 * window : -window]) / window,
                "n_clusters": self.tree.n_clusters,
            }
        )
        return optimizer

    def _split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            part.reshape(flat.shape[0], *shape)
            for part, shape in zip(flat.split(self.numels, dim=1), self.shapes)
        )

    def task_context(self, batch) -> TaskContext:
        h, reconstruction = self.representation(batch.x_support, batch.y_support)
        p, q, root = self.tree(h)
        z = torch.cat([h, root], dim=-1)
        theta = gated_init(z, self.gate_weight, self.gate_bias, self.theta0)
        return TaskContext(
            init_params=self._split(theta),
            aux_loss=self.settings.reconstruction_weight * reconstruction,
            assignments={"level1": p, "level2": (p[..., None] * q).sum(1)},
        )


def image_learner(config) -> ConvLearner:
    """The conv base learner of ``config`` (RGB, ``filters`` wide, ``n_way`` outputs): what
    every image method, plug-ins included, builds first."""
    return ConvLearner(3, config.filters, config.n_way, config.image_size)


def build_image_model(config) -> ImageMetaLearner:
    """A freshly initialized model for ``config`` (seed torch first for a reproducible init):
    the images factory of the registered method ``config.method`` (the paper's are in
    ``hsmlbench.domains.images.methods``; a plug-in registers its own for ``"images"``)."""
    return get_method(config.method, "images").build("images", config)
