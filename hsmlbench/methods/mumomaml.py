"""MUMOMAML: task-specific FiLM modulation of MAML's base learner (docs/PROTOCOL.md §3 "MUMOMAML").

The encoder and the FiLM heads are computed once per task and are not adapted by the inner
loop; second-order meta-gradients reach them through the adapted base parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp
from hsmlbench.methods.batch import TaskBatch
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.task_encoders import BiLSTMEncoder


@dataclass(frozen=True)
class MUMOMAMLSettings:
    """MUMOMAML as its own authors built it, on HSML's data (docs/PROTOCOL.md §3 "MUMOMAML")."""

    lstm_hidden: int = 40
    lstm_layers: int = 2
    inner_grad_clamp: float = 10.0  # element-wise clamp of inner-loop gradients
    outer_grad_clip: float = 2.0  # global norm clip of the meta-gradient
    # How the task embedding modulates each hidden layer (docs/PROTOCOL.md §3 "MUMOMAML"):
    # "affine": a·(1 + γ) + β, unbounded, Vuorio et al.'s FiLM (the default); "gamma_only":
    # a·(1 + γ); "sigmoid_gate": a·σ(γ), which like HSML's gates can only shrink (ablations).
    modulation: str = "affine"


MODULATIONS = ("affine", "gamma_only", "sigmoid_gate")


def modulate(
    gamma: torch.Tensor, beta: torch.Tensor, modulation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (γ, β) the base learner applies as a·(1 + γ) + β, for each ``modulation``:
    "affine" as the heads give them; "gamma_only" drops β; "sigmoid_gate" scales by σ(γ) in
    (0, 1), i.e. passes σ(γ) − 1 with β = 0."""
    if modulation == "affine":
        return gamma, beta
    if modulation == "gamma_only":
        return gamma, torch.zeros_like(beta)
    return torch.sigmoid(gamma) - 1.0, torch.zeros_like(beta)


class MUMOMAML(MetaLearner):
    def __init__(
        self,
        settings: MUMOMAMLSettings,
        inner_lr: float,
        second_order: bool = True,
        sizes: tuple[int, ...] = MLP_SIZES,
    ) -> None:
        super().__init__(inner_lr, second_order, inner_grad_clamp=settings.inner_grad_clamp)
        if settings.modulation not in MODULATIONS:
            raise ValueError(
                f"modulation={settings.modulation!r}: choose one of {', '.join(MODULATIONS)}"
            )
        self.modulation = settings.modulation
        self.theta0 = nn.ParameterList(nn.Parameter(t) for t in init_mlp(sizes))
        self.encoder = BiLSTMEncoder(2, settings.lstm_hidden, settings.lstm_layers)
        hidden_widths = sizes[1:-1]
        self.film_heads = nn.ModuleList(
            nn.Linear(self.encoder.out_features, 2 * width) for width in hidden_widths
        )

    def task_context(self, batch: TaskBatch) -> TaskContext:
        n = batch.n_tasks
        embedding = self.encoder(torch.cat([batch.x_support, batch.y_support], dim=-1))
        film = tuple(
            modulate(*head(embedding).chunk(2, dim=-1), self.modulation) for head in self.film_heads
        )
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.theta0), film=film)
