"""Task encoders: turn a task's support set into a vector, before any adaptation.

- ``GRUAutoencoder``: HSML's task representation (PAPER.md §3 "HSML" step 1).
- ``BiLSTMEncoder``: MUMOMAML's task encoder (PAPER.md §3 "MUMOMAML").
"""

from __future__ import annotations

import torch
from torch import nn


class GRUAutoencoder(nn.Module):
    """Embeds each support item, reads the sequence with a GRU, and reconstructs it in reverse.

    The task vector is the mean of the encoder's outputs over time. The decoder starts from the
    encoder's final state, is fed zeros and then its own projected outputs, and its output
    sequence is compared with the embedded inputs in reverse order (the reconstruction loss L_r).
    """

    def __init__(self, item_features: int, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(item_features, embedding)
        self.encoder = nn.GRU(embedding, hidden, batch_first=True)
        self.decoder = nn.GRUCell(embedding, hidden)
        self.project = nn.Linear(hidden, embedding)

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """items [T, K, item_features] → (task vector [T, hidden], reconstruction MSE scalar)."""
        embedded = self.embed(items)  # [T, K, E]
        outputs, final = self.encoder(embedded)  # [T, K, H], [1, T, H]
        task_vector = outputs.mean(dim=1)
        state = final[0]
        step_input = torch.zeros_like(embedded[:, 0])
        reconstruction = []
        for _ in range(embedded.shape[1]):
            state = self.decoder(step_input, state)
            step_input = self.project(state)
            reconstruction.append(step_input)
        reconstructed = torch.stack(reconstruction, dim=1)
        loss = (reconstructed - embedded.flip(1)).pow(2).mean()
        return task_vector, loss


class BiLSTMEncoder(nn.Module):
    """Two-layer bidirectional LSTM; the embedding joins the forward direction's last output
    and the backward direction's first output (Vuorio et al.'s MMAML)."""

    def __init__(self, item_features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(
            item_features, hidden, num_layers=layers, bidirectional=True, batch_first=True
        )

    @property
    def out_features(self) -> int:
        return 2 * self.hidden

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(items)  # [T, K, 2H]
        return torch.cat([outputs[:, -1, : self.hidden], outputs[:, 0, self.hidden :]], dim=-1)
