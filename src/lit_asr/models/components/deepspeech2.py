"""DeepSpeech2: a 2-D convolution front-end, stacked (bi)directional RNNs, and a linear layer to the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _conv_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


class ConvSubsampling(nn.Module):
    """Conv2d + BatchNorm + Hardtanh blocks over (time, frequency); strides shrink the time axis.

    Before each block, frames beyond each utterance's length are zeroed, so a block sees the same zeros after the
    last valid frame as its own padding gives a lone utterance: the output does not depend on batch padding, and
    a chunk-by-chunk run (``forward_chunk``) equals the whole one.
    """

    def __init__(self, input_dim: int, channels: list[int], kernels: list[list[int]], strides: list[list[int]]):
        super().__init__()
        layers = []
        in_ch, freq = 1, input_dim
        self.time_specs: list[tuple[int, int, int]] = []  # (kernel, stride, padding) along time, for lengths
        self.block_inputs: list[tuple[int, int]] = []  # (channels, frequency bins) entering each block
        for out_ch, (kt, kf), (st, sf) in zip(channels, kernels, strides):
            pad = (kt // 2, kf // 2)
            layers += [nn.Conv2d(in_ch, out_ch, (kt, kf), (st, sf), pad, bias=False),
                       nn.BatchNorm2d(out_ch), nn.Hardtanh(0, 20, inplace=True)]
            self.time_specs.append((kt, st, pad[0]))
            self.block_inputs.append((in_ch, freq))
            freq = (freq + 2 * pad[1] - kf) // sf + 1
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.output_dim = in_ch * freq

    @property
    def lookahead_frames(self) -> int:
        """Input frames beyond ``stride * t`` that output frame ``t`` depends on (its right padding, compounded)."""
        frames, stride = 0, 1
        for k, s, p in self.time_specs:
            frames += (k - 1 - p) * stride
            stride *= s
        return frames

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames left after the convolutions, for ``lengths`` input frames."""
        for spec in self.time_specs:
            lengths = _conv_lengths(lengths, *spec)
        return lengths

    def blocks(self) -> list[nn.Sequential]:
        """The (conv, norm, activation) triples in order."""
        return [self.layers[i:i + 3] for i in range(0, len(self.layers), 3)]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        for block, spec in zip(self.blocks(), self.time_specs):
            valid = torch.arange(x.shape[2], device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
            x = block(x * valid[:, None, :, None])
            lengths = _conv_lengths(lengths, *spec)
        b, c, t, f = x.shape  # (B, C, T', F')
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), lengths

    def init_state(self, batch_size: int, device: torch.device) -> list[torch.Tensor]:
        """Per block, its input frames not consumed yet; at the start, the zeros of its left padding."""
        return [torch.zeros(batch_size, ch, p, freq, device=device)
                for (ch, freq), (_, _, p) in zip(self.block_inputs, self.time_specs)]

    def forward_chunk(self, feats: torch.Tensor, cache: list[torch.Tensor], final: bool
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Next feature frames (B, T, F) -> every output frame (B, T', D) they complete; ``cache`` carries the rest."""
        x, new_cache = feats.unsqueeze(1), []
        for (conv, norm, act), (k, s, p), held in zip(self.blocks(), self.time_specs, cache):
            pending = torch.cat([held, x.to(held.dtype)], dim=2)
            if final:  # the zeros a whole-utterance run pads after the last frame
                pending = torch.cat([pending, pending.new_zeros(*pending.shape[:2], p, pending.shape[3])], dim=2)
            n = max(0, (pending.shape[2] - k) // s + 1)  # output frames whose whole window has arrived
            if n:  # time padding is in ``pending`` already: the convolution pads the frequency axis only
                x = act(norm(F.conv2d(pending[:, :, :(n - 1) * s + k], conv.weight, conv.bias, conv.stride,
                                      (0, conv.padding[1]))))
            else:
                freq = (pending.shape[3] + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
                x = pending.new_zeros(pending.shape[0], conv.out_channels, 0, freq)
            new_cache.append(pending[:, :, n * s:])
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), new_cache


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

    def forward_chunk(self, x: torch.Tensor, hidden: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        """Forward-only stack on the next frames (B, T, D), from and to the per-layer hidden states (None: zeros)."""
        if self.bidirectional:
            raise ValueError("a bidirectional RNN stack needs the whole utterance; it cannot run chunk by chunk")
        new_hidden = []
        for rnn, norm, h in zip(self.forward_rnns, self.norms, hidden):
            out, h = rnn(x, h)
            new_hidden.append(h)
            x = norm(out)
        return x, new_hidden


@dataclass
class DeepSpeech2State:
    """What a streaming DeepSpeech2 carries between chunks: unconsumed conv inputs, RNN hidden states."""

    conv: list[torch.Tensor]
    rnn: list[Any] = field(default_factory=list)


class DeepSpeech2(nn.Module):
    """Features (B, T, F) with lengths -> CTC log-probabilities (B, T', vocab) with output lengths.

    With ``bidirectional=False`` it is MASR's streaming variant: forward-only RNNs after a front-end that looks
    ``lookahead_frames`` feature frames ahead, and it keeps the streaming-encoder contract
    (``lit_asr.models.components.streaming``): ``forward_chunk`` over any chunking equals ``forward``.
    """

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
        self.streaming = not bidirectional

    @property
    def lookahead_frames(self) -> int:
        """Feature frames beyond ``subsampling * t`` that output frame ``t`` depends on (forward-only RNNs)."""
        return self.conv.lookahead_frames

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames."""
        return self.conv.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.conv(feats, lengths)
        out_lengths = out_lengths.clamp(min=1, max=x.shape[1])
        x = self.rnn(x, out_lengths)
        return self.output(self.dropout(x)).log_softmax(dim=-1), out_lengths

    def init_state(self, batch_size: int, device: torch.device) -> DeepSpeech2State:
        """The state before the first chunk: the conv front-end's left padding, zero RNN states."""
        return DeepSpeech2State(self.conv.init_state(batch_size, device), [None] * len(self.rnn.norms))

    def forward_chunk(self, feats: torch.Tensor, state: DeepSpeech2State, final: bool = False
                      ) -> tuple[torch.Tensor, DeepSpeech2State]:
        """Next normalised frames (B, T, F) -> log-probabilities (B, T', vocab) of the output frames they complete."""
        if not self.streaming:
            raise ValueError("a bidirectional DeepSpeech2 cannot stream; train model=deepspeech2_streaming")
        x, conv_state = self.conv.forward_chunk(feats, state.conv, final)
        if not x.shape[1]:  # no output frame completed yet (an RNN refuses empty sequences)
            return x.new_zeros(x.shape[0], 0, self.output.out_features), DeepSpeech2State(conv_state, state.rnn)
        x, rnn_state = self.rnn.forward_chunk(x, state.rnn)
        return self.output(self.dropout(x)).log_softmax(dim=-1), DeepSpeech2State(conv_state, rnn_state)
