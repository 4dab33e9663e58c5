"""Task encoders: turn a task's support set into a vector, before any adaptation.

- ``GRUAutoencoder``: HSML's task representation (docs/PROTOCOL.md §3 "HSML" step 1).
- ``BiLSTMEncoder``: MUMOMAML's task encoder (docs/PROTOCOL.md §3 "MUMOMAML").

Eager code runs torch's fused recurrent kernels. ``torch.compile`` leaves ``nn.GRU`` /
``nn.LSTM`` to eager, so under compilation (the fast meta-step) the same recurrences run
unrolled, step by step, from the same parameters (``Recurrent.unrolled``, ``gru_cell``),
tested equal to torch's modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsmlbench.methods.base_learners import glorot_uniform_


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> torch.Tensor:
    """One step of ``nn.GRUCell``: gates (r, z, n) in the order torch stores them."""
    return _gru_step(F.linear(x, w_ih, b_ih), h, w_hh, b_hh)


def _gru_step(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class Recurrent(nn.Module):
    """A batch-first, zero-state ``nn.GRU`` or ``nn.LSTM``: the same parameters (names,
    shapes, initialization) and, in eager code, the same fused torch kernel; under
    ``torch.compile``, which leaves torch's recurrent modules to eager, the same recurrence
    unrolled step by step (``unrolled``)."""

    def __init__(
        self, kind: str, input_size: int, hidden: int, layers: int = 1, bidirectional: bool = False
    ) -> None:
        super().__init__()
        module = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        reference = module(input_size, hidden, num_layers=layers, bidirectional=bidirectional)
        self.kind, self.hidden_size, self.num_layers = kind, hidden, layers
        self.directions = 2 if bidirectional else 1
        self.names = [
            f"{weight}_l{layer}{suffix}"
            for layer in range(layers)
            for suffix in ("", "_reverse")[: self.directions]
            for weight in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        for name in self.names:
            self.register_parameter(name, reference.get_parameter(name))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [T, K, in] → (outputs [T, K, directions·H], final hidden [layers·dirs, T, H])."""
        if torch.compiler.is_compiling():
            return self.unrolled(inputs)
        return self._fused(inputs)

    def _fused(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = [getattr(self, name) for name in self.names]
        state = inputs.new_zeros(
            self.num_layers * self.directions, inputs.shape[0], self.hidden_size
        )
        args = (weights, True, self.num_layers, 0.0, self.training, self.directions == 2, True)
        if self.kind == "gru":
            return torch.gru(inputs, state, *args)
        outputs, final, _ = torch.lstm(inputs, (state, state), *args)
        return outputs, final

    def unrolled(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` as explicit per-step tensor ops (gate order as torch stores them)."""
        layer_input, finals = inputs, []
        n_steps = inputs.shape[1]
        for layer in range(self.num_layers):
            directions = []
            for suffix in ("", "_reverse")[: self.directions]:
                w_ih, w_hh, b_ih, b_hh = (
                    getattr(self, f"{weight}_l{layer}{suffix}")
                    for weight in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                )
                gi = F.linear(layer_input, w_ih, b_ih)  # every step's input gates at once
                h = c = inputs.new_zeros(inputs.shape[0], self.hidden_size)
                outputs: list[torch.Tensor] = [h] * n_steps
                order = range(n_steps - 1, -1, -1) if suffix else range(n_steps)
                for step in order:
                    if self.kind == "gru":
                        h = _gru_step(gi[:, step], h, w_hh, b_hh)
                    else:
                        i, f, g, o = (gi[:, step] + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
                        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                        h = torch.sigmoid(o) * torch.tanh(c)
                    outputs[step] = h
                directions.append(torch.stack(outputs, dim=1))
                finals.append(h)
            layer_input = torch.cat(directions, dim=-1)
        return layer_input, torch.stack(finals)


class GRUAutoencoder(nn.Module):
    """Embeds each support item, reads the sequence with a GRU, and reconstructs it in reverse.

    The task vector is the mean of the encoder's outputs over time. The decoder starts from the
    encoder's final state, is fed zeros and then its own projected outputs, and its output
    sequence is compared with the embedded inputs in reverse order (the reconstruction loss L_r).
    """

    def __init__(self, item_features: int, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(item_features, embedding)
        self.encoder = Recurrent("gru", embedding, hidden)
        self.decoder = nn.GRUCell(embedding, hidden)
        self.project = nn.Linear(hidden, embedding)

    def reset_parameters_like_authors(self) -> None:
        """The initializations of the HSML authors' TensorFlow code (docs/PROTOCOL.md §3 "HSML"
        step 1): Glorot-uniform dense and GRU kernels (TF1's GRUCell: one joint kernel for the
        reset and update gates, fan_in = in + H, fan_out = 2H; one for the candidate, fan_out =
        H), gate bias 1.0 and candidate bias 0 (torch's two GRU biases add up: the input-side
        one carries it, the hidden-side one is 0), zero dense biases, and the decoder's output
        projection from a normal with std 1.0 truncated at 2 std, bias 0.1."""
        with torch.no_grad():
            if isinstance(self.embed, nn.Linear):  # images feed features directly (Identity)
                glorot_uniform_(self.embed.weight, self.embed.in_features, self.embed.out_features)
                self.embed.bias.zero_()
            cells = [
                (self.encoder.weight_ih_l0, self.encoder.weight_hh_l0),
                (self.encoder.bias_ih_l0, self.encoder.bias_hh_l0),
                (self.decoder.weight_ih, self.decoder.weight_hh),
                (self.decoder.bias_ih, self.decoder.bias_hh),
            ]
            for w_ih, w_hh in cells[0::2]:
                hidden, inputs = w_hh.shape[1], w_ih.shape[1]
                for rows, fan_out in (
                    (slice(0, 2 * hidden), 2 * hidden),
                    (slice(2 * hidden, None), hidden),
                ):
                    glorot_uniform_(w_ih[rows], inputs + hidden, fan_out)
                    glorot_uniform_(w_hh[rows], inputs + hidden, fan_out)
            for b_ih, b_hh in cells[1::2]:
                hidden = b_hh.shape[0] // 3
                b_ih.zero_()[: 2 * hidden] = 1.0
                b_hh.zero_()
            nn.init.trunc_normal_(self.project.weight, std=1.0, a=-2.0, b=2.0)
            self.project.bias.fill_(0.1)

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """items [T, K, item_features] → (task vector [T, hidden], reconstruction MSE scalar)."""
        unrolled = torch.compiler.is_compiling()
        embedded = self.embed(items)  # [T, K, E]
        outputs, final = self.encoder(embedded)  # [T, K, H], [1, T, H]
        task_vector = outputs.mean(dim=1)
        state = final[0]
        step_input = torch.zeros_like(embedded[:, 0])
        reconstruction = []
        cell = self.decoder
        for _ in range(embedded.shape[1]):
            if unrolled:
                state = gru_cell(
                    step_input, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
                )
            else:
                state = cell(step_input, state)
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
        self.lstm = Recurrent("lstm", item_features, hidden, layers, bidirectional=True)

    @property
    def out_features(self) -> int:
        return 2 * self.hidden

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(items)  # [T, K, 2H]
        return torch.cat([outputs[:, -1, : self.hidden], outputs[:, 0, self.hidden :]], dim=-1)
