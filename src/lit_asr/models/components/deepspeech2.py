"""DeepSpeech2: a 2-D convolution front-end, stacked (bi)directional RNNs, and a linear layer to the vocabulary."""

from __future__ import annotations

import torch
from torch import nn


class ConvSubsampling(nn.Module):
    """Conv2d + BatchNorm + Hardtanh blocks over (time, frequency); strides shrink the time axis."""

    def __init__(self, input_dim: int, channels: list[int], kernels: list[list[int]], strides: list[list[int]]):
        super().__init__()
        layers = []
        in_ch, freq = 1, input_dim
        self.time_specs: list[tuple[int, int, int]] = []  # (kernel, stride, padding) along time, for lengths
        for out_ch, (kt, kf), (st, sf) in zip(channels, kernels, strides):
            pad = (kt // 2, kf // 2)
            layers += [nn.Conv2d(in_ch, out_ch, (kt, kf), (st, sf), pad, bias=False),
                       nn.BatchNorm2d(out_ch), nn.Hardtanh(0, 20, inplace=True)]
            self.time_specs.append((kt, st, pad[0]))
            freq = (freq + 2 * pad[1] - kf) // sf + 1
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.output_dim = in_ch * freq

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames left after the convolutions, for ``lengths`` input frames."""
        for k, s, p in self.time_specs:
            lengths = torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layers(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), self.output_lengths(lengths)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of a (B, T, D) batch within its own length; padding stays where it is."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    source = lengths.to(x.device).unsqueeze(1) - 1 - steps
    source = torch.where(source >= 0, source, steps)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


class RNNStack(nn.Module):
    """Stacked GRU/LSTM layers, each followed by LayerNorm; bidirectional outputs are summed as in DS2.

    The backward direction runs on each utterance reversed within its length, so padding never reaches a valid
    frame and no packed sequences are needed: exact, and on CPU about twice as fast in backward as packing.
    """

    def __init__(self, input_dim: int, hidden: int, num_layers: int, rnn_type: str, bidirectional: bool):
        super().__init__()
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn_type]
        self.bidirectional = bidirectional
        self.forward_rnns = nn.ModuleList()
        self.backward_rnns = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(num_layers):
            size_in = input_dim if i == 0 else hidden
            self.forward_rnns.append(rnn_cls(size_in, hidden, batch_first=True))
            if bidirectional:
                self.backward_rnns.append(rnn_cls(size_in, hidden, batch_first=True))
            self.norms.append(nn.LayerNorm(hidden))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, norm in enumerate(self.norms):
            # A forward RNN on right-padded input is exact on valid frames: padding only comes after them.
            out, _ = self.forward_rnns[i](x)
            if self.bidirectional:
                back, _ = self.backward_rnns[i](reverse_padded(x, lengths))
                out = out + reverse_padded(back, lengths)
            x = norm(out)
        return x


class DeepSpeech2(nn.Module):
    """Features (B, T, F) with lengths -> CTC log-probabilities (B, T', vocab) with output lengths."""

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        conv_channels: list[int] = (32, 32),
        conv_kernels: list[list[int]] = ((11, 41), (11, 21)),
        conv_strides: list[list[int]] = ((2, 2), (2, 1)),
        num_rnn_layers: int = 3,
        rnn_size: int = 1024,
        rnn_type: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.conv = ConvSubsampling(input_dim, list(conv_channels), [list(k) for k in conv_kernels],
                                    [list(s) for s in conv_strides])
        self.rnn = RNNStack(self.conv.output_dim, rnn_size, num_rnn_layers, rnn_type, bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(rnn_size, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames."""
        return self.conv.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.conv(feats, lengths)
        out_lengths = out_lengths.clamp(min=1, max=x.shape[1])
        x = self.rnn(x, out_lengths)
        return self.output(self.dropout(x)).log_softmax(dim=-1), out_lengths
