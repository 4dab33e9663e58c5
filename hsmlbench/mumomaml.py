"""MUMOMAML: task-specific FiLM modulation of MAML's base learner (docs/PROTOCOL.md §3 "MUMOMAML").

The encoder and the FiLM heads are computed once per task and are not adapted by the inner
loop; second-order meta-gradients reach them through the adapted base parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from hsmlbench.base_learners import MLP_SIZES, init_mlp
from hsmlbench.configs import MUMOMAMLSettings
from hsmlbench.meta_learner import MetaLearner, TaskContext
from hsmlbench.task_encoders import BiLSTMEncoder
from hsmlbench.tasks import TaskBatch


class MUMOMAML(MetaLearner):
    def __init__(
        self,
        settings: MUMOMAMLSettings,
        inner_lr: float,
        second_order: bool = True,
        sizes: tuple[int, ...] = MLP_SIZES,
    ) -> None:
        super().__init__(inner_lr, second_order, inner_grad_clamp=settings.inner_grad_clamp)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(sizes))
        self.encoder = BiLSTMEncoder(2, settings.lstm_hidden, settings.lstm_layers)
        hidden_widths = sizes[1:-1]
        self.film_heads = nn.ModuleList(
            nn.Linear(self.encoder.out_features, 2 * width) for width in hidden_widths
        )

    def task_context(self, batch: TaskBatch) -> TaskContext:
        n = batch.n_tasks
        embedding = self.encoder(torch.cat([batch.x_support, batch.y_support], dim=-1))
        film = tuple(tuple(head(embedding).chunk(2, dim=-1)) for head in self.film_heads)
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.theta0), film=film)
