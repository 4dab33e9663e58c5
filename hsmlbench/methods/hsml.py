"""HSML: task representation → hierarchical soft clustering → gated initialization → MAML.

docs/PROTOCOL.md §3 "HSML". The clustering tree and the gates go through the two ops of
``hsmlbench.kernels`` (fused Triton kernels on GPU, their torch twins elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hsmlbench.kernels import gated_init, soft_assign_tree
from hsmlbench.methods.base_learners import MLP_SIZES, glorot_uniform_, init_mlp, mlp_shapes
from hsmlbench.methods.batch import TaskBatch
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.task_encoders import GRUAutoencoder


@dataclass(frozen=True)
class HSMLSettings:
    """HSML's task representation, tree and gates, regression sizes (docs/PROTOCOL.md §3 "HSML")."""

    pair_embedding: int = 20  # Linear(2 → 20) on each (x, y) support pair
    hidden: int = 40  # d: GRU hidden size and task-vector size
    clusters: tuple[int, ...] = (4, 2)  # first-level, second-level clusters; then the root
    sigma: float = 2.0  # divides ‖h − c‖² as 2σ (the authors' code), docs/PROTOCOL.md §3 step 2
    reconstruction_weight: float = 0.01  # ξ
    level2: str = "code"  # "code": assignment by a linear map; "centres": the paper's text
    # "authors": the initializations of the authors' code (Glorot tree biases; Glorot GRU
    # kernels, gate bias 1.0; decoder projection N(0, 1) truncated, bias 0.1), docs/PROTOCOL.md
    # §3 "HSML" steps 1-2. "torch": torch's defaults and zero tree biases (this project's
    # earlier runs; an ablation row).
    init: str = "authors"


class ClusterTree(nn.Module):
    """Soft assignment to learned centres and the 2-level tree to a root
    (docs/PROTOCOL.md §3 step 2)."""

    def __init__(
        self,
        dim: int,
        clusters: tuple[int, ...],
        sigma: float,
        level2: str,
        bias_init: str = "glorot",
    ) -> None:
        """``bias_init``: "glorot" (the authors' code: every tree variable, biases included,
        from the framework's default Glorot-uniform, docs/PROTOCOL.md §3 "HSML" step 2) or
        "zeros" (torch's habit, this project's earlier choice)."""
        super().__init__()
        if bias_init not in ("glorot", "zeros"):
            raise ValueError(f"bias_init={bias_init!r}: choose 'glorot' (authors) or 'zeros'")
        self.bias_init = bias_init
        if len(clusters) != 2:
            raise ValueError(f"clusters={clusters}: the tree has exactly two levels below the root")
        if level2 not in ("code", "centres"):
            raise ValueError(
                f"level2={level2!r}: choose 'code' (authors' code) or 'centres' (paper text)"
            )
        k1, k2 = clusters
        self.sigma, self.level2, self.dim = sigma, level2, dim
        self._init_level1(k1, dim)
        # level 2: assignment logits (code) or level-2 centres (paper text)
        self.w2 = nn.Parameter(glorot_uniform_(torch.empty(dim, k2), dim, k2))
        self.b2 = nn.Parameter(self.new_bias(k2))
        self.u = nn.Parameter(glorot_uniform_(torch.empty(k2, dim, dim), dim, dim))
        self.ub = nn.Parameter(self.new_bias(k2, dim))
        self.r = nn.Parameter(glorot_uniform_(torch.empty(dim, dim), dim, dim))
        self.rb = nn.Parameter(self.new_bias(dim))

    def new_bias(self, *shape: int, **kwargs) -> torch.Tensor:
        """Zeros, or one Glorot-uniform bias vector per row: TensorFlow's rule for a vector of
        length n (fan_in = fan_out = n) gives U(±√(3/n))."""
        bias = torch.zeros(*shape, **kwargs)
        if self.bias_init == "glorot":
            glorot_uniform_(bias, shape[-1], shape[-1])
        return bias

    def _init_level1(self, k1: int, dim: int) -> None:
        self.centres = nn.Parameter(glorot_uniform_(torch.empty(k1, dim), k1, dim))
        self.w1 = nn.Parameter(glorot_uniform_(torch.empty(k1, dim, dim), dim, dim))
        self.b1 = nn.Parameter(self.new_bias(k1, dim))

    def level1(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Level-1 centres [K1, d], transforms [K1, d, d] and biases [K1, d]."""
        return self.centres, self.w1, self.b1

    @property
    def n_clusters(self) -> int:
        return self.level1()[0].shape[0]

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h [T, d] → level-1 assignment p [T, K1], level-2 assignment q [T, K1, K2], root [T, d]."""
        centres, w1, b1 = self.level1()
        if self.level2 == "code":
            return soft_assign_tree(
                h, centres, w1, b1, self.w2, self.b2, self.u, self.ub, self.r, self.rb, self.sigma
            )
        return self._forward_with_level2_centres(h, centres, w1, b1)

    def _forward_with_level2_centres(self, h, centres, w1, b1):
        """The paper's text: level 2 also assigns by distance to centres (w2ᵀ rows as centres)."""
        sq = ((h[:, None] - centres[None]) ** 2).sum(-1)
        p = torch.softmax(-sq / (2 * self.sigma), dim=-1)
        node1 = p[..., None] * torch.tanh(torch.einsum("bd,kde->bke", h, w1) + b1)
        centres2 = self.w2.t()  # [K2, d]
        sq2 = ((node1[:, :, None] - centres2[None, None]) ** 2).sum(-1)  # [T, K1, K2]
        q = torch.softmax(-sq2 / (2 * self.sigma), dim=-1)
        transformed = torch.tanh(torch.einsum("bkd,jde->bkje", node1, self.u) + self.ub)
        node2 = (q[..., None] * transformed).sum(1)
        root = torch.tanh(node2 @ self.r + self.rb).sum(1)
        return p, q, root


INITS = ("authors", "torch")


def tree_bias_init(settings) -> str:
    """The tree's bias initialization for ``settings.init`` (checked here, once)."""
    if settings.init not in INITS:
        raise ValueError(f"init={settings.init!r}: choose 'authors' or 'torch'")
    return "glorot" if settings.init == "authors" else "zeros"


class HSML(MetaLearner):
    """Hierarchically structured meta-learning on the regression base learner."""

    def __init__(
        self,
        settings: HSMLSettings,
        inner_lr: float,
        second_order: bool = True,
        sizes: tuple[int, ...] = MLP_SIZES,
        ablate_gates: bool = False,
        tree: ClusterTree | None = None,
    ) -> None:
        """``ablate_gates`` skips encoder, tree and gates: every gate is 1, i.e. plain MAML
        (docs/PROTOCOL.md §1; used to test that MAML is HSML's special case)."""
        super().__init__(inner_lr, second_order)
        self.settings, self.ablate_gates = settings, ablate_gates
        self.shapes = mlp_shapes(sizes)
        self.numels = [int(torch.Size(s).numel()) for s in self.shapes]
        d = settings.hidden
        self.theta0 = nn.Parameter(torch.cat([t.flatten() for t in init_mlp(sizes)]))
        self.encoder = GRUAutoencoder(2, settings.pair_embedding, d)
        if settings.init == "authors":
            self.encoder.reset_parameters_like_authors()
        self.tree = tree or ClusterTree(
            d, settings.clusters, settings.sigma, settings.level2, tree_bias_init(settings)
        )
        gate_weight = torch.empty(2 * d, sum(self.numels))
        for segment in gate_weight.split(self.numels, dim=1):
            glorot_uniform_(segment, 2 * d, segment.shape[1])
        self.gate_weight = nn.Parameter(gate_weight)
        self.gate_bias = nn.Parameter(torch.zeros(sum(self.numels)))

    def _split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[T, P] → per-tensor views [T, *shape]."""
        return tuple(
            part.reshape(flat.shape[0], *shape)
            for part, shape in zip(flat.split(self.numels, dim=1), self.shapes)
        )

    def task_context(self, batch: TaskBatch) -> TaskContext:
        n = batch.n_tasks
        if self.ablate_gates:
            return TaskContext(init_params=self._split(self.theta0.expand(n, -1)))
        pairs = torch.cat([batch.x_support, batch.y_support], dim=-1)  # [T, K, 2]
        h, reconstruction = self.encoder(pairs)
        p, q, root = self.tree(h)
        z = torch.cat([h, root], dim=-1)  # [T, 2d]
        theta = gated_init(z, self.gate_weight, self.gate_bias, self.theta0)  # [T, P]
        return TaskContext(
            init_params=self._split(theta),
            aux_loss=self.settings.reconstruction_weight * reconstruction,
            assignments={"level1": p, "level2": (p[..., None] * q).sum(1)},
        )
