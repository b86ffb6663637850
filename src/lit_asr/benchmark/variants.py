"""Model variants the benchmark times against the configured DeepSpeech2, to find what is worth changing.

Each is built from the model config and changed here, so the project's model code stays as it is; the
report gives each variant's step time against the unchanged model's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lit_asr.models.components.deepspeech2 import DeepSpeech2, RNNStack, reverse_padded


class PackedRNNStack(RNNStack):
    """The RNN stack as it was before (lit-asr up to issue 7): every direction over packed sequences.

    Same parameters and, on valid frames, the same outputs as ``RNNStack``; packing makes the CPU GRU project
    each step's input separately (forward and backward) instead of all steps in one matrix product.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        total, cpu_lengths = x.shape[1], lengths.cpu()

        def run(rnn: nn.RNNBase, inputs: torch.Tensor) -> torch.Tensor:
            packed = nn.utils.rnn.pack_padded_sequence(inputs, cpu_lengths, batch_first=True, enforce_sorted=False)
            return nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=total)[0]

        for i, norm in enumerate(self.norms):
            out = run(self.forward_rnns[i], x)
            if self.bidirectional:
                out = out + reverse_padded(run(self.backward_rnns[i], reverse_padded(x, lengths)), lengths)
            x = norm(out)
        return x


def with_rnn_stack(net: DeepSpeech2, cls: type[RNNStack]) -> DeepSpeech2:
    """``net`` with its RNN stack's class swapped (parameters untouched)."""
    net.rnn.__class__ = cls
    return net


class ChannelsLastConv(nn.Module):
    """Runs the convolution front-end in channels-last memory format."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv.to(memory_format=torch.channels_last)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.conv.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv.layers(feats.unsqueeze(1).contiguous(memory_format=torch.channels_last))
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), self.conv.output_lengths(lengths)


def autocast_context(dtype: torch.dtype | None, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts for ``dtype`` (None: full precision)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class Variant:
    """One change to time against the baseline; threads and autocast are applied by the caller."""

    description: str
    model: dict = field(default_factory=dict)  # model config overrides
    rnn_stack: type[RNNStack] | None = None
    channels_last: bool = False
    autocast: torch.dtype | None = None
    threads: int | None = None
    compile: str | None = None  # torch.compile target: "conv" or "net"


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("as configured, float32, all threads"),
    "threads_1": Variant("torch.set_num_threads(1)", threads=1),
    "packed": Variant("PackedRNNStack: RNNs over packed sequences (the previous RNNStack)",
                      rnn_stack=PackedRNNStack),
    "lstm": Variant("rnn_type=lstm (4 gates: 4/3 of the GRU's RNN FLOPs)", model={"rnn_type": "lstm"}),
    "lstm_packed": Variant("rnn_type=lstm + PackedRNNStack", model={"rnn_type": "lstm"}, rnn_stack=PackedRNNStack),
    "channels_last": Variant("conv front-end in channels-last memory format", channels_last=True),
    "bf16_autocast": Variant("torch.autocast('cpu', torch.bfloat16), as trainer.precision=bf16-mixed",
                             autocast=torch.bfloat16),
    "bf16_threads_1": Variant("bf16 autocast + 1 thread", autocast=torch.bfloat16, threads=1),
    "bf16_packed": Variant("bf16 autocast + PackedRNNStack", rnn_stack=PackedRNNStack, autocast=torch.bfloat16),
    "compile_conv": Variant("torch.compile of the conv front-end", compile="conv"),
    "compile_net": Variant("torch.compile of the whole network", compile="net"),
}


def build_variant(name: str, model_cfg: dict, input_dim: int, vocab_size: int, seed: int = 0) -> DeepSpeech2:
    """The DeepSpeech2 of ``model_cfg`` changed as variant ``name`` says (threads and autocast are the caller's)."""
    variant = VARIANTS[name]
    cfg = {k: v for k, v in model_cfg.items() if k != "_target_"} | variant.model
    torch.manual_seed(seed)
    net = DeepSpeech2(input_dim=input_dim, vocab_size=vocab_size, **cfg)
    if variant.rnn_stack is not None:
        with_rnn_stack(net, variant.rnn_stack)
    if variant.channels_last:
        net.conv = ChannelsLastConv(net.conv)
    if variant.compile == "conv":
        net.conv.forward = torch.compile(net.conv.forward)
    elif variant.compile == "net":
        net.forward = torch.compile(net.forward)
    return net
