"""MAML: one initialization θ0 shared by every task (docs/PROTOCOL.md §1, §3)."""

from __future__ import annotations

from torch import nn

from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp
from hsmlbench.methods.batch import TaskBatch
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext


class MAML(MetaLearner):
    def __init__(self, inner_lr: float, second_order: bool = True, sizes=MLP_SIZES) -> None:
        super().__init__(inner_lr, second_order)
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(sizes))

    def task_context(self, batch: TaskBatch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.theta0))
