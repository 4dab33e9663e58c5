"""Meta-SGD (Li, Zhou, Chen, Li 2017, arXiv 1707.09835) as an hsmlbench plugin.

MAML with one learned inner learning rate per base-learner parameter: the inner step is
θ ← θ − α ∘ ∇L_support(θ), and α is meta-learned with θ0 by the same Adam. Everything else
(tasks, base learner, inner loop, meta-loss, evaluation, statistics) is hsmlbench's: the
method only says what a task starts from (``TaskContext``), so both meta-step paths (fast and
autograd) serve it unchanged.

It runs on both domains: ``MetaSGD`` on the regression MLP (T1, T2), ``ImageMetaSGD`` on the
conv learner of the image tables (T3, T4), one registered factory each under one name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hsmlbench.domains.images.models import ImageMetaLearner, image_learner
from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import register_method


@dataclass(frozen=True)
class MetaSGDSettings:
    """``alpha_init``: every α starts at the protocol's inner learning rate (docs/PROTOCOL.md
    §3 "Meta-training"), so the first meta-iteration is MAML's.

    ``alpha_max``: the inner steps use α clamped to [0, alpha_max] (None: unbounded, as in the
    Meta-SGD paper). Unbounded, all four paper-budget T1 runs diverged (meta-loss inf at
    iterations 369 to 20,278): single entries of α on the 40×40 layer reached 0.65-6.9, and
    some went negative (an ascent step). Bounded at 0.1 (the top of the range the Meta-SGD
    paper draws its initial α from), two of four still diverged in training and one in
    evaluation (10 test steps, 5 in training). 0.01 is ten times the protocol's α."""

    alpha_init: float = 0.001
    alpha_max: float | None = 0.01


class MetaSGD(MetaLearner):
    def __init__(self, settings: MetaSGDSettings, inner_lr: float, second_order: bool = True):
        super().__init__(inner_lr, second_order)
        self.alpha_max = settings.alpha_max
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(MLP_SIZES))
        self.alpha = nn.ParameterList(
            nn.Parameter(torch.full_like(t, settings.alpha_init)) for t in self.theta0
        )

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(
            init_params=tuple(p.expand(n, *p.shape) for p in self.theta0),
            inner_lrs=tuple(self.inner_lrs()),
        )

    def inner_lrs(self) -> list[torch.Tensor]:
        """The α the inner steps use: the learned ones, within [0, alpha_max]."""
        if self.alpha_max is None:
            return list(self.alpha)
        return [a.clamp(0.0, self.alpha_max) for a in self.alpha]


@register_method("metasgd", settings=MetaSGDSettings, label="Meta-SGD")
def build_metasgd(config) -> MetaSGD:
    settings = MetaSGDSettings(**(config.plugin_settings or {}))
    return MetaSGD(settings, config.inner_lr, config.second_order)


# --- T3/T4: the same method on the image base learner ------------------------------------
# Registering "metasgd" again with domains=("images",) adds an images factory to the same
# method; the tables' runs then build it with ``hsmlbench.domains.images.models``'s pieces.


@dataclass(frozen=True)
class ImageMetaSGDSettings:
    """As ``MetaSGDSettings``, at the image protocol's scale: every α starts at its inner
    learning rate, 0.01 (docs/PROTOCOL.md §4), so the first meta-iteration is MAML's, and the
    inner steps use α within [0, ten times that], the regression bound's rule."""

    alpha_init: float = 0.01
    alpha_max: float | None = 0.1


class ImageMetaSGD(ImageMetaLearner):
    """Meta-SGD on the conv learner: θ0 as ``ImageMAML``'s, one learned α per entry of it."""

    def __init__(
        self,
        learner,
        settings: ImageMetaSGDSettings,
        k_shot: int,
        inner_lr: float,
        second_order: bool = True,
    ):
        super().__init__(learner, k_shot, inner_lr, second_order)
        self.alpha_max = settings.alpha_max
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in learner.init_tensors())
        self.alpha = nn.ParameterList(
            nn.Parameter(torch.full_like(t, settings.alpha_init)) for t in self.theta0
        )

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(
            init_params=tuple(p.expand(n, *p.shape) for p in self.theta0),
            inner_lrs=tuple(self.inner_lrs()),
        )

    def inner_lrs(self) -> list[torch.Tensor]:
        """The α the inner steps use: the learned ones, within [0, alpha_max]."""
        if self.alpha_max is None:
            return list(self.alpha)
        return [a.clamp(0.0, self.alpha_max) for a in self.alpha]


@register_method("metasgd", domains=("images",), settings=ImageMetaSGDSettings, label="Meta-SGD")
def build_image_metasgd(config) -> ImageMetaSGD:
    settings = ImageMetaSGDSettings(**(config.plugin_settings or {}))
    learner = image_learner(config)
    return ImageMetaSGD(learner, settings, config.k_shot, config.inner_lr, config.second_order)
