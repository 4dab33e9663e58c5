"""Task encoders for images: HSML's task representation and MUMOMAML's conv encoder.

- ``ImageFeatureCNN``: HSML's per-image CNN (docs/PROTOCOL.md §4; the authors'
  ``image_embedding.py``).
- ``ImageTaskRepresentation``: per-image features ⊕ (1 − one-hot(label)) → the GRU autoencoder of
  ``hsmlbench.methods.task_encoders`` (hidden d = 128) → task vector h and reconstruction loss.
- ``MUMOMAMLImageEncoder``: Vuorio et al.'s image encoder with one FiLM head per conv block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsmlbench.methods.task_encoders import GRUAutoencoder


def _pooled(side: int) -> int:
    """Side after a 3×3 stride-2 max-pool with 'same' padding (TF: ceil(side / 2))."""
    return (side + 2 - 3) // 2 + 1


def _trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    return nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


class ImageFeatureCNN(nn.Module):
    """5×5 conv (no bias) → ReLU → 3×3/2 max-pool → LRN → 5×5 conv (no bias) → ReLU → LRN →
    3×3/2 max-pool → FC 384 → ReLU → FC 64 → ReLU. Trained jointly from scratch.

    TF's ``lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)`` is torch's
    ``LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1)`` (torch divides alpha by size).
    The authors' code has no bias on either conv and initializes weights from a truncated
    normal with std 0.04 and the FC biases at 0.1; so does this.
    """

    def __init__(self, image_size: int = 84, filters: int = 32, features: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, filters, 5, padding=2, bias=False)
        self.conv2 = nn.Conv2d(filters, filters, 5, padding=2, bias=False)
        self.lrn = nn.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0)
        side = _pooled(_pooled(image_size))
        self.fc1 = nn.Linear(filters * side * side, 384)
        self.fc2 = nn.Linear(384, features)
        for module in (self.conv1, self.conv2, self.fc1, self.fc2):
            _trunc_normal_(module.weight.data, 0.04)
        for module in (self.fc1, self.fc2):
            nn.init.constant_(module.bias, 0.1)
        self.out_features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] → [B, features]."""
        h = F.max_pool2d(torch.relu(self.conv1(images)), 3, stride=2, padding=1)
        h = self.lrn(h)
        h = self.lrn(torch.relu(self.conv2(h)))
        h = F.max_pool2d(h, 3, stride=2, padding=1)
        h = torch.relu(self.fc1(h.flatten(1)))
        return torch.relu(self.fc2(h))


class ImageTaskRepresentation(nn.Module):
    """HSML's image task vector (docs/PROTOCOL.md §4): the support images' features with their label
    vectors 1 − one-hot(y) (as the authors' code feeds them), read as a sequence by the GRU
    autoencoder of docs/PROTOCOL.md §3 with hidden d.

    The authors' image branch feeds the 64 + N item features to the GRU directly (no first
    dense layer, unlike regression's Linear(2 → 20)), so the autoencoder's embedding layer is
    the identity here and the reconstruction target is the items themselves.
    """

    def __init__(
        self, image_size: int, n_way: int, hidden: int = 128, features: int = 64, filters: int = 32
    ) -> None:
        super().__init__()
        self.n_way = n_way
        self.cnn = ImageFeatureCNN(image_size, filters, features)
        items = features + n_way
        self.autoencoder = GRUAutoencoder(items, items, hidden)
        self.autoencoder.embed = nn.Identity()

    def forward(
        self, x_support: torch.Tensor, y_support: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, M, 3, S, S], y [T, M] → (h [T, d], reconstruction MSE scalar)."""
        t, m = y_support.shape
        features = self.cnn(x_support.flatten(0, 1)).view(t, m, -1)
        labels = 1.0 - F.one_hot(y_support, self.n_way).to(features.dtype)
        return self.autoencoder(torch.cat([features, labels], dim=-1))


def per_task_batch_norm(
    h: torch.Tensor,
    n_tasks: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """Batch norm with each task's own batch statistics: h [T·M, C, H, W] (task-major)."""
    tm, c = h.shape[:2]
    m = tm // n_tasks
    stacked = (
        h.view(n_tasks, m, c, *h.shape[2:]).transpose(0, 1).reshape(m, n_tasks * c, *h.shape[2:])
    )
    stacked = F.batch_norm(
        stacked,
        None,
        None,
        None if weight is None else weight.repeat(n_tasks),
        None if bias is None else bias.repeat(n_tasks),
        training=True,
        eps=eps,
    )
    return stacked.view(m, n_tasks, c, *h.shape[2:]).transpose(0, 1).reshape(tm, c, *h.shape[2:])


class MUMOMAMLImageEncoder(nn.Module):
    """Images only: four 3×3 stride-2 convs (32, 64, 128, 256) each with batch norm and ReLU,
    spatial mean, Linear(256 → 128) + ReLU, mean over the support images; one linear head per
    base-learner block gives that block's per-channel FiLM (γ, β) (docs/PROTOCOL.md §4, after
    Vuorio et al.'s ``ConvEmbeddingModel`` and ``GatedConvModel``).

    Batch norm here also uses each task's own batch statistics (train and test alike), with a
    learnable scale and offset (torch's defaults, as theirs).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        embedding: int = 128,
        film_widths: tuple[int, ...] = (32, 32, 32, 32),
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.eps = eps
        widths = (3, *channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:])
        )
        self.bn_weight = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in channels)
        self.bn_bias = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in channels)
        self.project = nn.Linear(channels[-1], embedding)
        self.film_heads = nn.ModuleList(nn.Linear(embedding, 2 * w) for w in film_widths)
        for module in (*self.convs, self.project, *self.film_heads):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x_support: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """x [T, M, 3, S, S] → one (γ, β) pair [T, width] per base-learner block."""
        t = x_support.shape[0]
        h = x_support.flatten(0, 1)
        for conv, weight, bias in zip(self.convs, self.bn_weight, self.bn_bias):
            h = torch.relu(per_task_batch_norm(conv(h), t, weight, bias, self.eps))
        h = torch.relu(self.project(h.mean((2, 3))))  # [T·M, embedding]
        embedding = h.view(t, -1, h.shape[-1]).mean(1)
        return tuple(tuple(head(embedding).chunk(2, dim=-1)) for head in self.film_heads)
