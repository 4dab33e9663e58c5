"""ANIL, "Almost No Inner Loop" (Raghu, Raghu, Bengio, Vinyals, "Rapid Learning or Feature
Reuse? Towards Understanding the Effectiveness of MAML", ICLR 2020, arXiv 1909.09157), as an
hsmlbench plugin.

MAML whose inner loop adapts only the head, the base learner's last layer (its weight and
bias); the body keeps its meta-learned value on every task. The meta-gradient still reaches
the body, through the query loss and (second order) through the head's inner steps. The
method says which parameters the inner loop adapts with ``TaskContext.adapted``; both
meta-step paths (fast and autograd) and the evaluation then skip the body's inner gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import register_method


@dataclass(frozen=True)
class ANILSettings:
    """``head_layers``: how many of the base learner's last layers the inner loop adapts.
    1 (ANIL): the output layer, 40 → 1 (its weight [40, 1] and bias [1]); 3 would adapt every
    layer of the regression MLP, which is MAML."""

    head_layers: int = 1


class ANIL(MetaLearner):
    """One θ0 for every task, as MAML; only the last ``head_layers`` layers are adapted."""

    def __init__(self, settings: ANILSettings, inner_lr: float, second_order: bool = True):
        super().__init__(inner_lr, second_order)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(MLP_SIZES))
        n_params, n_layers = len(self.theta0), len(self.theta0) // 2
        if not 1 <= settings.head_layers <= n_layers:
            raise ValueError(f"head_layers={settings.head_layers}: choose 1 to {n_layers}")
        # (w1, b1, w2, b2, w3, b3): the last 2·head_layers tensors are the head
        self.adapted_flags = tuple(
            i >= n_params - 2 * settings.head_layers for i in range(n_params)
        )

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(
            init_params=tuple(p.expand(n, *p.shape) for p in self.theta0),
            adapted=self.adapted_flags,
        )


@register_method("anil", settings=ANILSettings, label="ANIL")
def build_anil(config) -> ANIL:
    settings = ANILSettings(**(config.plugin_settings or {}))
    return ANIL(settings, config.inner_lr, config.second_order)
