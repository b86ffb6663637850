"""Conv2d subsampling for attention encoders (WeNet/ESPnet style): 4x, 6x or 8x fewer frames, then a linear layer.

There is no padding along time, so each output frame depends on a fixed window of input frames
(``receptive_field`` frames starting at ``rate * index``): the same frames give the same output whether an
utterance is processed whole or chunk by chunk.
"""

from __future__ import annotations

import torch
from torch import nn

# rate -> (kernel, stride) of each Conv2d, applied along time and frequency alike
LAYERS: dict[int, tuple[tuple[int, int], ...]] = {4: ((3, 2), (3, 2)), 6: ((3, 2), (5, 3)), 8: ((3, 2), (3, 2), (3, 2))}


def receptive_field(rate: int) -> int:
    """Input frames one output frame depends on; also the fewest input frames that give one output frame."""
    frames, step = 1, 1
    for kernel, stride in LAYERS[rate]:
        frames += (kernel - 1) * step
        step *= stride
    return frames


class Conv2dSubsampling(nn.Module):
    """(B, T, F) features -> (B, T', d_model) with T' = frames after the strided convolutions (ReLU between)."""

    def __init__(self, input_dim: int, output_dim: int, rate: int = 4, channels: int | None = None):
        super().__init__()
        if rate not in LAYERS:
            raise ValueError(f"subsampling must be one of {sorted(LAYERS)}, not {rate}")
        channels = channels or output_dim
        layers: list[nn.Module] = []
        in_ch, freq = 1, input_dim
        for kernel, stride in LAYERS[rate]:
            layers += [nn.Conv2d(in_ch, channels, kernel, stride), nn.ReLU()]
            freq = (freq - kernel) // stride + 1
            in_ch = channels
        self.conv = nn.Sequential(*layers)
        self.linear = nn.Linear(channels * freq, output_dim)
        self.rate = rate
        self.receptive_field = receptive_field(rate)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames (0 when shorter than the receptive field)."""
        for kernel, stride in LAYERS[self.rate]:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Subsample ``feats`` (B, T, F) with T >= receptive_field; every output frame is complete."""
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.linear(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
