"""The contract a streaming encoder keeps, so one stream object serves every streaming model family.

An encoder (``nn.Module``) that supports streaming sets ``streaming = True`` and implements:

* ``init_state(batch_size, device) -> state``: whatever it must carry between chunks (cached input frames for
  its convolutions, RNN hidden states, attention caches); opaque to the caller.
* ``forward_chunk(feats, state, final) -> (log_probs, state)``: ``feats`` are the next normalised feature frames
  ``(B, T, F)`` (``T`` may be 0, any size otherwise); it returns the CTC log-probabilities ``(B, T', V)`` of every
  output frame that has become computable, holding back input it still needs as context. ``final=True`` marks the
  end of the input and flushes the rest.
* ``lookahead_frames``: input feature frames beyond the last one an output frame depends on (the model's
  algorithmic latency is ``lookahead_frames * stride``), stated so latency can be reported.

Guarantee (tested per model): feeding an utterance in chunks of any size, then ``final=True``, yields the same
log-probabilities, concatenated, as ``forward`` on the whole utterance, within float tolerance.
Models without streaming have ``streaming = False`` (or no attribute) and are refused by ``Recognizer.stream()``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class StreamingEncoder(Protocol):
    """Structural type of a streaming encoder (see the module docstring)."""

    streaming: bool
    lookahead_frames: int

    def init_state(self, batch_size: int, device: torch.device) -> Any: ...

    def forward_chunk(self, feats: torch.Tensor, state: Any, final: bool = False) -> tuple[torch.Tensor, Any]: ...


def supports_streaming(net: torch.nn.Module) -> bool:
    """True when ``net`` keeps the streaming contract."""
    return bool(getattr(net, "streaming", False))
