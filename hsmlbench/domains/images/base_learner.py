"""The image base learner: four conv blocks and a linear layer, batched over tasks
(docs/PROTOCOL.md §4).

Block: 3×3 conv (32 filters, 'same' padding, bias) → batch norm → ReLU → 2×2 max-pool, four
times; then a linear layer from 32·5·5 = 800 features (at 84×84) to N classes.

Batch norm always uses the current batch's statistics, train and test alike (as the authors'
TF code, ``tf.contrib.layers.batch_norm`` with its defaults: offset, no scale, ε = 1e-3). Each
task is normalized over its own images only. The offset is meta-learned but neither adapted nor
gated: it is a module parameter (``ConvLearner.bn_offsets``), outside the per-task parameters.

The per-task parameters carry a leading task dimension [T, ...]. One forward serves the whole
meta-batch with grouped convolutions: the T tasks' images are stacked along channels,
[N, T·C, H, W], and convolved with groups = T, so no Python loop over tasks runs. Per-task
batch statistics then are exactly ``F.batch_norm`` over that [N, T·C, H, W] tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hsmlbench.methods.base_learners import Params

N_BLOCKS = 4
FILTERS = 32  # docs/PROTOCOL.md §4
BN_EPS = 1e-3  # tf.contrib.layers.batch_norm's default, as the authors' code used


def feature_side(image_size: int, blocks: int = N_BLOCKS) -> int:
    """Spatial side after ``blocks`` 2×2 max-pools without padding (84 → 42 → 21 → 10 → 5)."""
    side = image_size
    for _ in range(blocks):
        side //= 2
    if side < 1:
        raise ValueError(f"image size {image_size} is too small for {blocks} 2×2 max-pools")
    return side


def conv_shapes(
    in_channels: int = 3, filters: int = FILTERS, n_way: int = 5, image_size: int = 84
) -> list[tuple[int, ...]]:
    """(conv1 weight, conv1 bias, ..., conv4 bias, linear weight [in, out], linear bias)."""
    shapes: list[tuple[int, ...]] = []
    channels = in_channels
    for _ in range(N_BLOCKS):
        shapes += [(filters, channels, 3, 3), (filters,)]
        channels = filters
    shapes += [(filters * feature_side(image_size) ** 2, n_way), (n_way,)]
    return shapes


def xavier_uniform_(t: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-bound, bound)


def init_conv(shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Xavier-uniform weights (TF's ``xavier_initializer_conv2d``: fans include the 3×3
    receptive field), zero biases (docs/PROTOCOL.md §4)."""
    tensors = []
    for shape in shapes:
        t = torch.zeros(shape)
        if len(shape) == 4:
            field = shape[2] * shape[3]
            xavier_uniform_(t, shape[1] * field, shape[0] * field)
        elif len(shape) == 2:
            xavier_uniform_(t, shape[0], shape[1])
        tensors.append(t)
    return tensors


def conv_forward(
    params: Params,
    x: torch.Tensor,
    bn_offsets: torch.Tensor,
    film: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
    eps: float = BN_EPS,
) -> torch.Tensor:
    """Logits of every task's images: x [T, N, C, H, W] → [T, N, n_way].

    ``bn_offsets`` [4, F] is shared by all tasks. ``film`` optionally gives one (γ, β) pair
    [T, F] per block, applied after batch norm and before the ReLU as h·(1 + γ) + β
    (MUMOMAML's per-channel modulation, docs/PROTOCOL.md §4).
    """
    t, n = x.shape[:2]
    h = x.transpose(0, 1).reshape(n, t * x.shape[2], *x.shape[3:])
    for block in range(N_BLOCKS):
        weight, bias = params[2 * block], params[2 * block + 1]
        filters = weight.shape[1]
        h = F.conv2d(
            h, weight.reshape(t * filters, *weight.shape[2:]), bias.reshape(-1), padding=1, groups=t
        )
        offset = bn_offsets[block].repeat(t)
        # An explicit unit scale, not weight=None: CUDA's batch-norm double backward (second-order
        # MAML) fails with "tensor does not have a device" on an undefined weight (seen on H100).
        h = F.batch_norm(h, None, None, torch.ones_like(offset), offset, training=True, eps=eps)
        if film is not None:
            gamma, beta = film[block]
            h = torch.addcmul(beta.reshape(1, -1, 1, 1), h, 1.0 + gamma.reshape(1, -1, 1, 1))
        h = F.max_pool2d(torch.relu(h), 2)
    features = h.reshape(n, t, -1).transpose(0, 1)  # [T, N, F·side²], channel-major per task
    weight, bias = params[-2], params[-1]
    return torch.baddbmm(bias.unsqueeze(1), features, weight)


class ConvLearner(nn.Module):
    """The base learner's shapes, its batch-norm offsets, and the batched forward."""

    def __init__(
        self,
        in_channels: int = 3,
        filters: int = FILTERS,
        n_way: int = 5,
        image_size: int = 84,
        eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.shapes = conv_shapes(in_channels, filters, n_way, image_size)
        self.n_way, self.eps = n_way, eps
        self.bn_offsets = nn.Parameter(torch.zeros(N_BLOCKS, filters))

    def init_tensors(self) -> list[torch.Tensor]:
        return init_conv(self.shapes)

    def forward(self, params: Params, x: torch.Tensor, film=None) -> torch.Tensor:
        return conv_forward(params, x, self.bn_offsets, film, self.eps)


def cross_entropy_sum_over_k(
    logits: torch.Tensor, target: torch.Tensor, k_shot: int
) -> torch.Tensor:
    """Per-task Σ cross-entropy / K over the task's images: [T, M, n_way], [T, M] → [T].

    The authors' loss (``xent`` = softmax CE / update_batch_size, summed by ``tf.gradients``
    over the images); the inner learning rate α = 0.01 is tuned for this scale
    (docs/PROTOCOL.md §4).
    It is the same for support and query images, K being the support shots in both.
    """
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return ce.view(target.shape).sum(1) / k_shot


def accuracy_percent(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-task accuracy in percent: [T, M, n_way], [T, M] → [T]."""
    return (logits.argmax(-1) == target).to(logits.dtype).mean(1) * 100.0
