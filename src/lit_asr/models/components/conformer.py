"""Conformer-CTC: conv2d subsampling, sinusoidal positions, torchaudio's Conformer layers, a linear output layer.

The layers are ``torchaudio.models.Conformer``'s; only its 4-line ``forward`` is replaced, because it derives the
padding mask with ``lengths.max().item()``, which tracing would bake into an exported model as a constant.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchaudio.models import Conformer

from lit_asr.models.components.subsampling import Conv2dSubsampling


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal position encodings (len(positions), dim) for absolute frame indices ``positions``."""
    rates = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(1e4) / dim))
    angles = positions.float().unsqueeze(1) * rates
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(-1, dim)


def padding_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) bool, True on padding; traceable (no ``.item()``)."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class ConformerFrontEnd(nn.Module):
    """Subsampling plus scaled input and absolute positions: what every Conformer variant here feeds its layers."""

    def __init__(self, input_dim: int, d_model: int, subsampling: int, dropout: float, pos_enc: bool):
        super().__init__()
        self.subsampling = Conv2dSubsampling(input_dim, d_model, subsampling)
        self.d_model = d_model
        self.pos_enc = pos_enc
        self.dropout = nn.Dropout(dropout)

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Scale subsampled frames (B, T, D) and add the positions of frames ``offset .. offset + T - 1``."""
        x = x * math.sqrt(self.d_model)
        if self.pos_enc:
            x = x + sinusoids(torch.arange(x.shape[1], device=x.device) + offset, self.d_model)
        return self.dropout(x)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> embedded frames (B, T', D) and their lengths (at least 1, like DeepSpeech2's)."""
        short = self.subsampling.receptive_field - feats.shape[1]
        if short > 0:  # fewer frames than one output needs: zero-pad to one output frame instead of failing
            feats = nn.functional.pad(feats, (0, 0, 0, short))
        x = self.subsampling(feats)
        lengths = self.subsampling.output_lengths(lengths).clamp(min=1, max=x.shape[1])
        return self.embed(x), lengths


class ConformerCTC(nn.Module):
    """Features (B, T, F) with lengths -> CTC log-probabilities (B, T', vocab) with output lengths (full context)."""

    streaming = False

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 12,
        ffn_dim: int = 2048,
        conv_kernel: int = 15,
        subsampling: int = 4,
        dropout: float = 0.1,
        pos_enc: bool = True,
    ):
        super().__init__()
        self.front = ConformerFrontEnd(input_dim, d_model, subsampling, dropout, pos_enc)
        self.encoder = Conformer(d_model, num_heads, ffn_dim, num_layers, conv_kernel, dropout=dropout)
        self.output = nn.Linear(d_model, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames."""
        return self.front.subsampling.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.front(feats, lengths)
        mask = padding_mask(out_lengths, x.shape[1])
        x = x.transpose(0, 1)  # torchaudio's layers take (T, B, D)
        for layer in self.encoder.conformer_layers:
            x = layer(x, mask)
        return self.output(x.transpose(0, 1)).log_softmax(dim=-1), out_lengths
