"""BMAML, Bayesian MAML (Jaesik Yoon, Taesup Kim, Ousmane Dia, Sungwoong Kim, Yoshua Bengio,
Sungjin Ahn, "Bayesian Model-Agnostic Meta-Learning", NeurIPS 2018, arXiv 1806.03836), as an
hsmlbench plugin.

Each task's posterior over the base learner is represented by M particles. A particle is a
whole base learner (the protocol's MLP 1-40-40-1) plus two log-precisions: log λ of a
Gaussian prior on its weights and log γ of a Gaussian likelihood. Meta-learning learns the M
initial particles Θ0. A task's inner loop moves its particles by Stein variational gradient
descent (SVGD) on their log-posterior given the support set:

    θ_i ← θ_i + α·φ(θ_i),   φ(θ_i) = (1/M) Σ_j [k(θ_j, θ_i) ∇log p(θ_j) + ∇_{θ_j} k(θ_j, θ_i)],

with the RBF kernel k(a, b) = exp(−‖a − b‖²/h) and the median heuristic h = med/log M (med:
the median of the M×M squared distances of the task's particles, diagonal included, as the
authors' code computes it; h is not differentiated). A prediction is the mean over the
particles. Each initial particle is its own Glorot-uniform draw, as in the authors' code
(``BMAMLSettings.init`` says why not the protocol's std-0.01 init).

The meta-loss is the chaser loss (``meta_loss="chaser"``, BMAML's own): the particles after
the inner steps on the support set (the chaser) are pulled towards where ``leader_steps`` more
SVGD steps on support ∪ query take them (the leader, not differentiated):
Σ_particles Σ_weights (θ_chaser − sg(θ_leader))², averaged over tasks; the log-precisions are
left out of the distance, as in the authors' code. ``meta_loss="bfa"`` instead uses the
protocol's meta-loss on the particle-averaged prediction (the query MSE of the ensemble after
the inner steps), a squared-error form of BMAML's Bayesian fast adaptation. Evaluation is the
protocol's: the query MSE of the particle-averaged prediction after each test step.

In hsmlbench's contract: ``predict`` averages the particles, ``support_loss`` is each task's
Σ over particles of −log p(θ_m | support) (so each particle's gradient is its own),
``inner_update`` is the SVGD step, and the chaser loss overrides ``autograd_meta_loss``. The
model has no explicit inner gradients, so BMAML runs on the autograd meta-step.

For speed (the same values and derivatives, tested in float64 against the plain autograd
formulation, ``svgd_update``), three pieces are autograd Functions with their derivatives
written out: the SVGD step (``_SVGDStep``: few passes over, and few new copies of, the
[T, M, D] particles; differentiated once, by the meta-gradient), and the hidden layer with its
weights' squared norm and the other weights' squared norms (``_LinearAndHalfSquare``,
``_HalfSumOfSquares``: derivatives in differentiable operations, which autograd differentiates
again). The T·M networks run as one batch, their one-unit-wide layers as broadcast products.
The inner gradients stay ``torch.autograd.grad`` of the support loss (``inner_loop.adapt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hsmlbench.methods.base_learners import MLP_SIZES, glorot_uniform_, init_mlp, mlp_shapes
from hsmlbench.methods.inner_loop import adapt
from hsmlbench.methods.meta_learner import MetaLearner, TaskContext
from hsmlbench.methods.registry import register_method

N_WEIGHTS = 2 * (len(MLP_SIZES) - 1)  # w1, b1, w2, b2, w3, b3; then log λ, log γ

SOURCE = (
    "the HSML paper (Yao et al., ICML 2019), Table 1; recalled rather than checked against "
    "the PDF (docs/PROTOCOL.md §2 T1), so secondary"
)
PUBLISHED = {
    ("T1", "5-shot"): (2.016, 0.109, SOURCE),
    ("T1", "10-shot"): (0.698, 0.054, SOURCE),
}


@dataclass(frozen=True)
class BMAMLSettings:
    """Defaults from the BMAML authors' code (github jsikyoon/bmaml, ``bmaml_main.py`` flags,
    ``bnn.py``, ``bmaml.py``), their regression runs' values:

    ``particles`` M (``--num_particles`` 10); ``meta_loss``: "chaser" (BMAML) or "bfa" (the
    ensemble's query MSE); ``leader_steps`` (``--leader_step`` 1); Gamma(a, b) hyper-priors on
    the noise precision γ (``a_g`` 2, ``b_g`` 0.2) and on the weight precision λ (``a_l`` 2,
    ``b_l`` 2); every particle's log γ starts at −log ``noise_var_init`` (``m_g`` 0.01: γ = 100)
    and log λ at −log ``weight_var_init`` (``m_l`` 1), each plus N(0, ``log_init_std``²)
    (0.001); ``log_lr_scale``: the inner step of the log-precisions is α times this
    (``--lambda_lr`` 1).

    ``repulsion`` scales the kernel-gradient term of φ: 1 is SVGD's ∇_{θ_j} k(θ_j, θ_i) =
    (2/h)(θ_i − θ_j) k exactly; the authors' code computes (1/h)(θ_i − θ_j) k, i.e. 0.5 here.

    ``init``: how each particle's MLP is drawn, independently of the others. "authors" (the
    default, ``bnn.py``): Glorot-uniform weights, biases from N(0, 0.01²). "protocol": MAML's
    (truncated normal, std 0.01, zero biases). With "protocol" the M particles start within
    about 0.6 of each other, where the kernel's derivative (∝ 1/distance, h not
    differentiated) dominates the meta-gradient: in 300-iteration checks at the protocol's α
    neither meta-loss lowered the training query MSE (about 18.6 throughout), while with
    "authors" it fell from about 8 to 4 (README.md)."""

    particles: int = 10
    meta_loss: str = "chaser"
    leader_steps: int = 1
    a_gamma: float = 2.0
    b_gamma: float = 0.2
    a_lambda: float = 2.0
    b_lambda: float = 2.0
    noise_var_init: float = 0.01
    weight_var_init: float = 1.0
    log_init_std: float = 0.001
    log_lr_scale: float = 1.0
    repulsion: float = 1.0
    init: str = "authors"


def _batched_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h [B, N, in] @ w [B, in, out] + b [B, out]; a layer one unit wide (the regression MLP's
    input and output) as a broadcast product instead of a batched matmul (as hsmlbench's
    ``base_learners._linear``)."""
    if w.shape[1] == 1:
        return torch.addcmul(b.unsqueeze(1), h, w)
    if w.shape[2] == 1:
        return (h * w.transpose(1, 2)).sum(-1, keepdim=True) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), h, w)


class _HalfSumOfSquares(torch.autograd.Function):
    """½ Σ_k ‖w_k‖² of every particle, w_k [T, M, ...] → [T, M], by a norm's reduction (no
    temporary of w_k's size), with the derivative g·w_k one product, which autograd
    differentiates again (the second-order meta-gradient through the inner steps) in one
    product too, where ``w.pow(2).sum()`` takes several new tensors of w_k's size each way."""

    @staticmethod
    def forward(ctx, *tensors):
        ctx.save_for_backward(*tensors)
        total = None
        for t in tensors:
            sq = torch.linalg.vector_norm(t.flatten(2), dim=2).square()
            total = sq if total is None else total + sq
        return 0.5 * total

    @staticmethod
    def backward(ctx, grad):
        return tuple(t * grad.view(*grad.shape, *(1,) * (t.dim() - 2)) for t in ctx.saved_tensors)


class _LinearAndHalfSquare(torch.autograd.Function):
    """(h @ w + b, ½‖w‖²) of every network in a batch: h [B, N, in], w [B, in, out], b [B, out]
    → ([B, N, out], [B]), so that the derivative with respect to w of a loss that uses both,
    hᵀ ∂out + w·∂(½‖w‖²), is one new tensor (a batched matmul, the other term added in place)
    rather than autograd's three (each branch's, and their sum): w2's gradient in every inner
    step. The derivative is written with differentiable operations, which autograd
    differentiates again for the second-order meta-gradient."""

    @staticmethod
    def forward(ctx, h, w, b):
        ctx.save_for_backward(h, w)
        half_sq = 0.5 * torch.linalg.vector_norm(w.flatten(1), dim=1).square()
        return torch.baddbmm(b.unsqueeze(1), h, w), half_sq

    @staticmethod
    def backward(ctx, grad_out, grad_half_sq):
        h, w = ctx.saved_tensors
        d_h = torch.bmm(grad_out, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        d_w = torch.bmm(h.transpose(1, 2), grad_out)
        d_w.addcmul_(w, grad_half_sq.view(-1, 1, 1))
        return d_h, d_w, grad_out.sum(1)


def median_bandwidth(sq_dists: torch.Tensor) -> torch.Tensor:
    """h = median of each task's M×M squared distances (diagonal zeros included; the mean of
    the two middle values when M² is even) / log M; not differentiated. [T, M, M] → [T]."""
    n_particles = sq_dists.shape[-1]
    flat = sq_dists.detach().flatten(1)
    n = flat.shape[1]
    # the ordered values' elements n // 2 (odd n), or n // 2 − 1 and n // 2 (0-based), picked
    # by selection (torch.median is the lower middle value) instead of a full sort
    upper = flat.kthvalue(n // 2 + 1, dim=1).values
    middle = upper if n % 2 else (flat.median(dim=1).values + upper) / 2
    # all particles at one point: any h > 0 gives k = 1 and no repulsion
    middle = torch.where(middle > 0, middle, torch.ones_like(middle))
    return middle / math.log(n_particles)


def _squared_distances_of_centred(centred: torch.Tensor):
    """``squared_distances`` of particles already centred on their mean, and 1.0 where its
    derivative passes (off the diagonal, and where the value before the clamp at 0 is ≥ 0, as
    ``clamp_min``'s derivative), else 0.0: ([T, M, M], [T, M, M])."""
    gram = torch.bmm(centred, centred.transpose(1, 2))
    norms = torch.diagonal(gram, dim1=1, dim2=2)
    raw = norms.unsqueeze(2) + norms.unsqueeze(1) - 2.0 * gram
    off_diagonal = 1.0 - torch.eye(centred.shape[1], dtype=centred.dtype, device=centred.device)
    return raw.clamp_min(0.0) * off_diagonal, (raw >= 0).to(centred.dtype) * off_diagonal


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """‖x_i − x_j‖² of every task's particles, [T, M, D] → [T, M, M], from the Gram matrix of
    the particles centred on their mean (no [T, M, M, D] tensor, and no cancellation against
    the particles' distance from the origin); the diagonal exactly 0."""
    return _squared_distances_of_centred(x - x.mean(dim=1, keepdim=True))[0]


def svgd_direction(x: torch.Tensor, score: torch.Tensor, repulsion: float = 1.0) -> torch.Tensor:
    """SVGD's φ for every task's particles: x, score (∇ log p) [T, M, D] → [T, M, D],
    φ_i = (1/M) Σ_j k_ij [score_j + repulsion·(2/h)(x_i − x_j)], k_ij = exp(−‖x_i − x_j‖²/h)."""
    n_particles = x.shape[1]
    sq_dists = squared_distances(x)
    h = median_bandwidth(sq_dists)
    kernel = torch.exp(-sq_dists / h[:, None, None])
    drive = torch.bmm(kernel, score)
    # Σ_j k_ij (x_i − x_j) = x_i Σ_j k_ij − Σ_j k_ij x_j
    spread = x * kernel.sum(2, keepdim=True) - torch.bmm(kernel, x)
    return (drive + (2.0 * repulsion / h)[:, None, None] * spread) / n_particles


class _SVGDStep(torch.autograd.Function):
    """One SVGD step of every task's particles, x_i + α_d·φ_d(x_i) (α_d: each coordinate's
    step size, one per parameter tensor), as one autograd node with its derivative written
    out: the values and derivatives of ``svgd_direction`` differentiated by autograd (tested in
    float64), computed in a few passes over the [T, M, D] particles instead of autograd's many,
    and with few new [T, M, D] tensors (on the CPU a new tensor of this size, 1.8 MB in float32
    at the protocol's meta-batch, costs about as much in page faults as the arithmetic on it).

    With x̄ the particles centred on their mean (Σ_j k_ij (x_i − x_j) = Σ_j k_ij (x̄_i − x̄_j)),
    c = 2·repulsion/h and r_i = Σ_j k_ij, the forward computes

        M·φ_i = c·r_i·x̄_i − Σ_j k_ij ĝ_j,   ĝ = −score + c·x̄   (one batched matmul, not two).

    Backward, with G the derivative of the loss with respect to the stepped particles and
    P = α⊙G/M:

        ∂/∂(−score) = −Kᵀ P,   ∂/∂x = G + c·(r⊙P − Kᵀ P) + 2·B x̄,
        ∂/∂k_ij = c·Σ_d P_id x̄_id − Σ_d P_id ĝ_jd,   A = ∂/∂sq = −(∂/∂k)⊙k/h (the clamp's and
        the diagonal's mask applied), B = diag(Σ_j A_ij + A_ji) − (A + Aᵀ),

    since ∂‖x_i − x_j‖²/∂x_m = ∂‖x̄_i − x̄_j‖²/∂x̄_m and B's rows sum to 0 (B x̄ = B x: the
    centring's own derivative vanishes). h is not differentiated, as in ``svgd_direction``.
    Differentiable once: the meta-gradient passes through each step once (an inner gradient
    stops at its step's input). The stepped tensors are views of one new [T, M, D] tensor."""

    @staticmethod
    def forward(ctx, alphas, repulsion, *tensors):
        n = len(alphas)
        params, grads = tensors[:n], tensors[n:]
        n_tasks, n_particles = params[0].shape[:2]
        sizes = [p[0, 0].numel() for p in params]
        x = torch.cat([p.reshape(n_tasks, n_particles, -1) for p in params], dim=2)
        centred = x - x.mean(dim=1, keepdim=True)
        sq_dists, mask = _squared_distances_of_centred(centred)
        h = median_bandwidth(sq_dists)[:, None, None]
        kernel = torch.exp(-sq_dists / h)
        c = (2.0 * repulsion) / h
        row_sums = kernel.sum(2, keepdim=True)
        shifted = torch.cat([g.reshape(n_tasks, n_particles, -1) for g in grads], dim=2)
        shifted.addcmul_(centred, c)  # ĝ = −score + c·x̄
        scale = _step_scale(alphas, sizes, n_particles, x)
        if isinstance(scale, float):  # one α: x + (α/M)·(c·r⊙x̄ − K ĝ), in place
            x.addcmul_(centred, (scale * c) * row_sums).baddbmm_(kernel, shifted, alpha=-scale)
        else:
            x.addcmul_(torch.baddbmm((c * row_sums) * centred, kernel, shifted, alpha=-1.0), scale)
        ctx.alphas, ctx.sizes = alphas, sizes
        ctx.shapes = [p.shape for p in params]
        ctx.save_for_backward(*params)  # alive anyway (the network's backward saves them)
        ctx.saved = (shifted, kernel, mask, h, c, row_sums)
        return tuple(part.view(shape) for part, shape in zip(x.split(sizes, dim=2), ctx.shapes))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_stepped):
        shifted, kernel, mask, h, c, row_sums = ctx.saved
        n_tasks, n_particles, _ = shifted.shape
        # x̄ again rather than kept from the forward: less memory held between the two
        centred = torch.cat([p.reshape(n_tasks, n_particles, -1) for p in ctx.saved_tensors], dim=2)
        centred -= centred.mean(dim=1, keepdim=True)
        g = torch.cat(
            [d.reshape(n_tasks, n_particles, -1) for d in grad_stepped], dim=2
        )  # a new tensor: updated in place below
        scale = _step_scale(ctx.alphas, ctx.sizes, n_particles, g)
        # P = scale·p: with one α, p is G and the scale goes on the small [T, M, M] factors
        p, scale = (g, scale) if isinstance(scale, float) else (g * scale, 1.0)
        d_neg_score = torch.bmm(kernel.transpose(1, 2) * -scale, p)  # −Kᵀ P
        p_centred = torch.bmm(p, centred.transpose(1, 2))  # [T, M, M]: its diagonal P_i·x̄_i
        d_kernel = torch.baddbmm(
            torch.diagonal(p_centred, dim1=1, dim2=2).unsqueeze(2) * (c * scale),
            p,
            shifted.transpose(1, 2),
            alpha=-scale,
        )
        a = d_kernel * kernel * mask / -h  # ∂/∂sq
        a = a + a.transpose(1, 2)
        b = torch.diag_embed(a.sum(2)) - a
        if p is g:  # G + c·r⊙P = G⊙(1 + c·(α/M)·r)
            d_x = g.mul_(1.0 + (c * scale) * row_sums)
        else:
            d_x = g.addcmul_(p, c * row_sums)
        d_x.baddbmm_(b, centred, alpha=2.0).addcmul_(d_neg_score, c)

        def split(t, wanted):
            if not wanted:
                return (None,) * len(ctx.sizes)
            parts = t.split(ctx.sizes, dim=2)
            return tuple(part.reshape(shape) for part, shape in zip(parts, ctx.shapes))

        n = len(ctx.alphas)
        wanted = ctx.needs_input_grad[2:]
        return (
            None,
            None,
            *split(d_x, any(wanted[:n])),
            *split(d_neg_score, any(wanted[n:])),
        )


def _step_scale(alphas, sizes, n_particles: int, like: torch.Tensor) -> float | torch.Tensor:
    """α/M: one float where every coordinate has the same α, else one per coordinate [D]."""
    if all(a == alphas[0] for a in alphas):
        return alphas[0] / n_particles
    return torch.cat(
        [torch.full((size,), a / n_particles, dtype=like.dtype) for a, size in zip(alphas, sizes)]
    ).to(like.device)


def svgd_update(params, grads, lrs, settings: BMAMLSettings):
    """``BMAML.inner_update`` written plainly: the chosen parameters flattened and
    concatenated, ``svgd_direction`` differentiated by autograd, the step split back (the
    reference the tests compare ``_SVGDStep`` with; used where a learning rate is a tensor)."""
    chosen = [i for i, g in enumerate(grads) if g is not None]
    if not chosen:
        return params
    n_tasks, n_particles = params[0].shape[:2]
    x = torch.cat([params[i].reshape(n_tasks, n_particles, -1) for i in chosen], dim=2)
    score = torch.cat([-grads[i].reshape(n_tasks, n_particles, -1) for i in chosen], dim=2)
    phi = svgd_direction(x, score, settings.repulsion)
    stepped, offset = list(params), 0
    for i in chosen:
        size = params[i][0, 0].numel()
        step = phi[:, :, offset : offset + size].reshape(params[i].shape)
        scale = settings.log_lr_scale if i >= N_WEIGHTS else 1.0
        stepped[i] = params[i] + (lrs[i] * scale) * step  # ascent on the log-posterior
        offset += size
    return tuple(stepped)


def _init_particle(kind: str) -> list[torch.Tensor]:
    """One particle's MLP tensors: "authors" as the BMAML code's ``bnn.py`` (Glorot-uniform
    weights, biases from N(0, 0.01²)); "protocol" as MAML's (``init_mlp``)."""
    if kind == "protocol":
        return init_mlp(MLP_SIZES)
    tensors = []
    for shape in mlp_shapes(MLP_SIZES):
        if len(shape) == 2:
            tensors.append(glorot_uniform_(torch.empty(shape), *shape))
        else:
            tensors.append(0.01 * torch.randn(shape))
    return tensors


class _SupportAndQuery:
    """A batch whose support set is another batch's support ∪ query (the chaser's leader)."""

    def __init__(self, batch) -> None:
        self.x_support = torch.cat([batch.x_support, batch.x_query], dim=1)
        self.y_support = torch.cat([batch.y_support, batch.y_query], dim=1)
        self.x_query, self.y_query = batch.x_query, batch.y_query

    @property
    def n_tasks(self) -> int:
        return self.x_support.shape[0]


class BMAML(MetaLearner):
    """M particles, each an MLP and two log-precisions; ``particles`` holds their initial
    values Θ0 with a leading particle dimension (w1 [M, 1, 40], ..., log λ [M], log γ [M]).

    Not named ``theta0``: the job record's θ0 dead-unit analysis reads a plain MLP's θ0."""

    def __init__(self, settings: BMAMLSettings, inner_lr: float, second_order: bool = True):
        super().__init__(inner_lr, second_order)
        if settings.particles < 2:
            raise ValueError(f"particles={settings.particles}: SVGD needs at least 2")
        if settings.meta_loss not in ("chaser", "bfa"):
            raise ValueError(f"meta_loss={settings.meta_loss!r}: choose 'chaser' or 'bfa'")
        if settings.leader_steps < 1:
            raise ValueError(f"leader_steps={settings.leader_steps}: at least 1")
        self.settings = settings
        if settings.init not in ("authors", "protocol"):
            raise ValueError(f"init={settings.init!r}: choose 'authors' or 'protocol'")
        m = settings.particles
        draws = [_init_particle(settings.init) for _ in range(m)]  # independent draws
        tensors = [torch.stack(per_particle) for per_particle in zip(*draws)]
        log_lambda = -math.log(settings.weight_var_init) + settings.log_init_std * torch.randn(m)
        log_gamma = -math.log(settings.noise_var_init) + settings.log_init_std * torch.randn(m)
        self.particles = nn.ParameterList(
            nn.Parameter(t) for t in [*tensors, log_lambda, log_gamma]
        )

    # -- the base learner: M MLPs, averaged ------------------------------------------------

    def particle_predictions(self, params, x: torch.Tensor) -> torch.Tensor:
        """Every particle's output: x [T, N, 1] → [T, M, N, 1], the T·M networks as one
        batch (``_batched_linear``)."""
        return self._networks(params, x, with_weight_norms=False)[0]

    def _networks(self, params, x: torch.Tensor, with_weight_norms: bool):
        """``particle_predictions``, and with ``with_weight_norms`` each particle's ½ Σ ‖w‖²
        over its weights and biases, [T, M] (else None): a square layer's (w2's) from
        ``_LinearAndHalfSquare``, the others' from ``_HalfSumOfSquares``."""
        n_tasks, n_particles = params[0].shape[:2]
        batch = n_tasks * n_particles
        h = x.unsqueeze(1).expand(n_tasks, n_particles, *x.shape[1:]).reshape(batch, *x.shape[1:])
        n_layers = N_WEIGHTS // 2
        fused, others = [], []
        for layer in range(n_layers):
            w, b = params[2 * layer], params[2 * layer + 1]
            w, b = w.reshape(batch, *w.shape[2:]), b.reshape(batch, -1)
            if with_weight_norms and min(w.shape[1:]) > 1:
                h, half_sq = _LinearAndHalfSquare.apply(h, w, b)
                fused.append(half_sq.view(n_tasks, n_particles))
                others.append(params[2 * layer + 1])
            else:
                h = _batched_linear(h, w, b)
                others += params[2 * layer : 2 * layer + 2]
            if layer < n_layers - 1:
                h = torch.relu(h)
        half_sq_weights = None
        if with_weight_norms:
            half_sq_weights = sum(fused, _HalfSumOfSquares.apply(*others))
        return h.view(n_tasks, n_particles, *h.shape[1:]), half_sq_weights

    def predict(self, params, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        """The particles' mean prediction, [T, N, 1]."""
        return self.particle_predictions(params, x).mean(1)

    def log_posterior(self, params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each particle's unnormalized log-posterior given (x, y), [T, M] (the authors'
        ``bnn.py``): Σ_n [½ log γ − ½ γ (f(x_n) − y_n)²] + ½ n_w log λ − ½ λ ‖w‖²
        + log Gamma(γ; a_γ, b_γ) + log Gamma(λ; a_λ, b_λ) in log-space (+ log γ, + log λ)."""
        s = self.settings
        weights, log_lambda, log_gamma = params[:N_WEIGHTS], params[N_WEIGHTS], params[-1]
        prediction, half_sq_weights = self._networks(params, x, with_weight_norms=True)
        half_sq_error = _HalfSumOfSquares.apply(prediction - y.unsqueeze(1))
        n_points = prediction.shape[2] * prediction.shape[3]
        n_weights = sum(w[0, 0].numel() for w in weights)
        # the terms above, grouped by precision: (½N + a_γ) log γ − γ (½ Σ_n err² + b_γ)
        # + (½ n_w + a_λ) log λ − λ (½ ‖w‖² + b_λ)
        return (
            (0.5 * n_points + s.a_gamma) * log_gamma
            - log_gamma.exp() * (half_sq_error + s.b_gamma)
            + (0.5 * n_weights + s.a_lambda) * log_lambda
            - log_lambda.exp() * (half_sq_weights + s.b_lambda)
        )

    # -- the contract's hooks ----------------------------------------------------------------

    def task_context(self, batch) -> TaskContext:
        n = batch.n_tasks
        return TaskContext(init_params=tuple(p.expand(n, *p.shape) for p in self.particles))

    def support_loss(self, params, batch, ctx: TaskContext) -> torch.Tensor:
        """Σ over the task's particles of −log p(θ_m | support): [T]."""
        return -self.log_posterior(params, batch.x_support, batch.y_support).sum(1)

    def inner_update(self, params, grads, lrs, ctx: TaskContext):
        """One SVGD step of every task's particles, over all adapted parameters flattened
        into one vector per particle (the log-precisions included, as in the authors' code).

        Computed by ``_SVGDStep`` (one node, its derivative written out); ``svgd_update``, the
        same step through ``svgd_direction`` and autograd, where a learning rate is a tensor."""
        chosen = [i for i, g in enumerate(grads) if g is not None]
        if not chosen:
            return params
        alphas = [lrs[i] * self._lr_scale(i) for i in chosen]
        if not all(isinstance(a, (int, float)) for a in alphas):
            return svgd_update(params, grads, lrs, self.settings)
        stepped_chosen = _SVGDStep.apply(
            tuple(float(a) for a in alphas),
            self.settings.repulsion,
            *(params[i] for i in chosen),
            *(grads[i] for i in chosen),
        )
        stepped = list(params)
        for i, new in zip(chosen, stepped_chosen):
            stepped[i] = new
        return tuple(stepped)

    def _lr_scale(self, index: int) -> float:
        return self.settings.log_lr_scale if index >= N_WEIGHTS else 1.0

    # -- the meta-loss -------------------------------------------------------------------------

    def _adapt(self, params, batch, ctx: TaskContext, steps: int, second_order: bool):
        return adapt(
            params,
            lambda p: self.support_loss(p, batch, ctx),
            ctx.inner_lrs or self.inner_lr,
            steps,
            second_order=second_order,
            grad_clamp=self.inner_grad_clamp,
            adapted=ctx.adapted,
            update=lambda p, g, lrs: self.inner_update(p, g, lrs, ctx),
        )

    def autograd_meta_loss(self, batch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The chaser loss (``meta_loss="chaser"``), or the protocol's meta-loss on the
        ensemble ("bfa"). Returns ``(loss, per-task query MSE of the ensemble after the inner
        steps)``, the second for the training curves."""
        if self.settings.meta_loss == "bfa":
            return super().autograd_meta_loss(batch, steps)
        ctx = self.task_context(batch)
        chaser = self._adapt(ctx.init_params, batch, ctx, steps, self.second_order)
        with torch.enable_grad():
            start = tuple(p.detach().requires_grad_(True) for p in chaser)
            leader = self._adapt(
                start, _SupportAndQuery(batch), ctx, self.settings.leader_steps, False
            )
        leader = tuple(p.detach() for p in leader)
        differences = (c - t for c, t in zip(chaser[:N_WEIGHTS], leader[:N_WEIGHTS]))
        # [T]: Σ (θ_chaser − θ_leader)² over the particles and their weights (log-precisions
        # left out), as 2·½Σ
        distance = 2.0 * _HalfSumOfSquares.apply(*differences).sum(1)
        with torch.no_grad():
            query = self.task_loss(self.predict(chaser, batch.x_query, ctx), batch.y_query)
        return distance.mean(), query


@register_method(
    "bmaml",
    settings=BMAMLSettings,
    label="BMAML",
    published=PUBLISHED,
    meta_steps=("autograd",),  # its own base learner, loss and update; no explicit gradients
)
def build_bmaml(config) -> BMAML:
    settings = BMAMLSettings(**(config.plugin_settings or {}))
    return BMAML(settings, config.inner_lr, config.second_order)
