"""MT-Net (Yoonho Lee, Seungjin Choi, "Gradient-Based Meta-Learning with Learned Layerwise
Metric and Subspace", ICML 2018, arXiv 1801.05558) as an hsmlbench plugin.

MAML's base learner with two meta-learned additions, both untouched by the inner loop:

- a **transformation** T after every layer (the T-net): layer ℓ computes
  (h W_ℓ + b_ℓ) T_ℓ, then the ReLU (none after the output), with T_ℓ a square matrix over the
  layer's outputs that starts at the identity;
- a **mask** (the M-net) over the layer's output units: each task samples, once before its
  inner loop, one binary mask entry per unit from learned logits ζ_ℓ by a two-class
  Gumbel-softmax with a straight-through estimator, and the inner steps change only the
  weights and bias of the units whose entry is 1: W ← W − α·(1 mᵀ)∘∇W, b ← b − α·m∘∇b.

The inner loop adapts W and b only (from the meta-learned θ0). The meta-gradient reaches θ0,
every T_ℓ and every ζ_ℓ (through the straight-through mask). The masks are the per-task inner
learning rates of hsmlbench's contract (``TaskContext.inner_lrs`` = α·mask), and the
T-layers live in this model's own ``predict``; that base learner has no explicit inner
gradients here, so MT-Net runs on the autograd meta-step.

Settings follow the MT-Net authors' code (github yoonholee/MT-net, ``maml.py``, with the
regression flags ``--use_T=True --use_M=True --share_M=True`` of ``experiments/sine.sh``):
T_ℓ starts at the identity, ζ_ℓ at ``logit_init`` = 0 (each unit adapted with probability
1/2), Gumbel temperature 1, and the masks are sampled at test time too. Everything else is the
HSML protocol's (README.md of this package says which setting comes from where).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hsmlbench.methods.base_learners import MLP_SIZES, init_mlp
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import register_method

UNITS = MLP_SIZES[1:]  # output units of each layer, (40, 40, 1): one T_ℓ and one ζ_ℓ each

SOURCE = (
    "the HSML paper (Yao et al., ICML 2019), Table 1; recalled rather than checked against "
    "the PDF (docs/PROTOCOL.md §2 T1), so secondary"
)
PUBLISHED = {
    ("T1", "5-shot"): (2.435, 0.130, SOURCE),
    ("T1", "10-shot"): (0.967, 0.056, SOURCE),
}


@dataclass(frozen=True)
class MTNetSettings:
    """``temperature``: of the two-class Gumbel-softmax that samples each task's mask (the
    authors' ``--temp``, default 1).

    ``logit_init``: every mask logit ζ starts here (the authors' ``--logit_init``, default 0:
    each unit is adapted with probability 1/2 at the start).

    ``test_mask``: "sample" (the authors' code: evaluation samples each test task's mask as
    training does) or "mode" (each unit adapted iff ζ ≥ 0, no noise)."""

    temperature: float = 1.0
    logit_init: float = 0.0
    test_mask: str = "sample"


def gumbel_noise(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from U(0, 1) draws, as the authors write it (1e-20 guards)."""
    return -torch.log(-torch.log(uniform + 1e-20) + 1e-20)


class MTNet(MetaLearner):
    """θ0 (``weights``, adapted per task), T-layers (``transforms``) and mask logits
    (``mask_logits``); only θ0 is stepped by the inner loop, and only on masked units.

    θ0 is not named ``theta0``: the job record's θ0 dead-unit analysis assumes a plain MLP,
    and MT-Net's units pass through T before their ReLU."""

    def __init__(self, settings: MTNetSettings, inner_lr: float, second_order: bool = True):
        super().__init__(inner_lr, second_order)
        if settings.temperature <= 0:
            raise ValueError(f"temperature={settings.temperature}: must be positive")
        if settings.test_mask not in ("sample", "mode"):
            raise ValueError(f"test_mask={settings.test_mask!r}: choose 'sample' or 'mode'")
        self.temperature = settings.temperature
        self.test_mask = settings.test_mask
        # θ0 first: the same draws as MAML's θ0 at the same seed (T and ζ draw nothing)
        self.weights = nn.ParameterList(nn.Parameter(t) for t in init_mlp(MLP_SIZES))
        self.transforms = nn.ParameterList(nn.Parameter(torch.eye(n)) for n in UNITS)
        self.mask_logits = nn.ParameterList(
            nn.Parameter(torch.full((n,), float(settings.logit_init))) for n in UNITS
        )

    def sample_masks(self, n_tasks: int) -> list[torch.Tensor]:
        """One mask per layer, [T, units]: 1 where the task's inner loop adapts the unit.

        Training (and test with ``test_mask="sample"``): per task and unit, Gumbel noise g0,
        g1 from one ``torch.rand(T, 81, 2)`` call on torch's global generator (so a
        concatenation of evaluation chunks draws what one batch would), the hard choice
        [(ζ + g0)/τ ≥ g1/τ], and its straight-through value hard − sg(soft) + soft, with
        soft = softmax((ζ + g0)/τ, g1/τ)[0]: the forward value is the hard 0/1, the
        gradient that of soft."""
        logits = torch.cat(list(self.mask_logits))  # [81]
        if not self.training and self.test_mask == "mode":
            masks = (logits >= 0).to(logits.dtype).expand(n_tasks, -1)
        else:
            uniform = torch.rand(
                n_tasks, logits.numel(), 2, dtype=logits.dtype, device=logits.device
            )
            noise = gumbel_noise(uniform)
            adapt = (logits + noise[..., 0]) / self.temperature
            keep = noise[..., 1] / self.temperature
            soft = torch.sigmoid(adapt - keep)  # the two-class softmax's first entry
            hard = (adapt >= keep).to(soft.dtype)
            masks = (hard - soft).detach() + soft
        return list(masks.split(UNITS, dim=1))

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        inner_lrs = []
        for mask in self.sample_masks(n):  # a unit's column of W [in, out] and its bias
            inner_lrs += [self.inner_lr * mask.unsqueeze(1), self.inner_lr * mask]
        return TaskContext(
            init_params=tuple(p.expand(n, *p.shape) for p in self.weights),
            inner_lrs=tuple(inner_lrs),
        )

    def predict(self, params, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        """x [T, N, 1] → [T, N, 1]: layer ℓ is (h W_ℓ + b_ℓ) T_ℓ, ReLU after the hidden ones."""
        n_layers = len(params) // 2
        h = x
        for layer in range(n_layers):
            w, b = params[2 * layer], params[2 * layer + 1]
            h = torch.matmul(torch.baddbmm(b.unsqueeze(1), h, w), self.transforms[layer])
            if layer < n_layers - 1:
                h = torch.relu(h)
        return h


@register_method(
    "mtnet",
    settings=MTNetSettings,
    label="MT-Net",
    published=PUBLISHED,
    meta_steps=("autograd",),  # its own predict (T-layers), no explicit inner gradients
)
def build_mtnet(config) -> MTNet:
    settings = MTNetSettings(**(config.plugin_settings or {}))
    return MTNet(settings, config.inner_lr, config.second_order)
