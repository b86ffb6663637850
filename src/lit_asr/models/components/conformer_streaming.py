"""Streaming Conformer-CTC: chunk attention masks (WeNet U2 dynamic chunks in training) and chunk-wise inference.

Training draws a chunk size per batch (full context with probability ``full_context_prob``, else 1 to
``max_train_chunk`` frames), so one model serves any decoding chunk size. In eval mode ``forward`` uses the fixed
``chunk_size``: frame t attends to every frame of its own chunk and of the ``num_left_chunks`` chunks before it
(all of them when -1), never later. The depthwise convolution is causal. ``forward_chunk`` keeps per layer the
attention inputs of the left context and the convolution's last ``kernel - 1`` inputs, so feeding the input in
pieces gives the log-probabilities ``forward`` gives for the whole utterance (the streaming contract,
``streaming.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchaudio.models.conformer import ConformerLayer

from lit_asr.models.components.conformer import ConformerFrontEnd, padding_mask


class CausalConformerLayer(ConformerLayer):
    """torchaudio's Conformer layer with a causal depthwise convolution and caches for chunk-wise inference."""

    def __init__(self, d_model: int, ffn_dim: int, num_heads: int, conv_kernel: int, dropout: float):
        super().__init__(d_model, ffn_dim, num_heads, conv_kernel, dropout=dropout)
        self.conv_module.sequential[2].padding = (0,)  # the depthwise conv: left context comes from the cache
        self.conv_context = conv_kernel - 1

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, attn_cache: torch.Tensor | None = None,
                conv_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (T, B, D) -> (output (T, B, D), attention inputs incl. the cache (S, B, D), conv cache (B, D, K-1)).

        ``attn_mask`` (B * heads, T, S) is True where attention is not allowed; ``attn_cache`` holds the attention
        inputs of earlier frames, ``conv_cache`` the convolution's inputs of the last K-1 earlier frames (zeros
        when None, as at the start of an utterance).
        """
        x = x + 0.5 * self.ffn1(x)
        query = self.self_attn_layer_norm(x)
        keys = query if attn_cache is None else torch.cat([attn_cache, query], dim=0)
        attended, _ = self.self_attn(query, keys, keys, attn_mask=attn_mask, need_weights=False)
        x = x + self.self_attn_dropout(attended)
        conv = self.conv_module
        y = conv.sequential[:2](conv.layer_norm(x).permute(1, 2, 0))  # pointwise conv + GLU: (B, D, T)
        y = nn.functional.pad(y, (self.conv_context, 0)) if conv_cache is None else torch.cat([conv_cache, y], 2)
        new_conv_cache = y[:, :, y.shape[2] - self.conv_context:]
        x = x + conv.sequential[2:](y).permute(2, 0, 1)
        x = x + 0.5 * self.ffn2(x)
        return self.final_layer_norm(x), keys, new_conv_cache


def chunk_attention_mask(lengths: torch.Tensor, frames: int, chunk: int, left_chunks: int,
                         heads: int) -> torch.Tensor:
    """(B * heads, frames, frames) bool, True where frame t may NOT attend frame s (chunk 0 = full context)."""
    keys_padded = padding_mask(lengths, frames)  # (B, S)
    blocked = keys_padded.unsqueeze(1).expand(-1, frames, -1)  # (B, T, S)
    if chunk > 0:
        index = torch.arange(frames, device=lengths.device) // chunk
        later = index.unsqueeze(0) > index.unsqueeze(1)  # key chunk after the query's chunk
        if left_chunks >= 0:
            later = later | (index.unsqueeze(0) < index.unsqueeze(1) - left_chunks)
        blocked = blocked | later.unsqueeze(0)
    # A padded query far from every valid key would have no key left: softmax would give NaN, even in gradients.
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    b = blocked.shape[0]
    return blocked.unsqueeze(1).expand(b, heads, frames, frames).reshape(b * heads, frames, frames)


class StreamingConformerCTC(nn.Module):
    """Conformer-CTC with chunk attention and causal convolutions; keeps the streaming-encoder contract."""

    streaming = True

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
        chunk_size: int = 16,
        num_left_chunks: int = -1,
        max_train_chunk: int = 25,
        full_context_prob: float = 0.5,
    ):
        super().__init__()
        self.front = ConformerFrontEnd(input_dim, d_model, subsampling, dropout, pos_enc)
        self.layers = nn.ModuleList(CausalConformerLayer(d_model, ffn_dim, num_heads, conv_kernel, dropout)
                                    for _ in range(num_layers))
        self.output = nn.Linear(d_model, vocab_size)
        self.num_heads = num_heads
        self.chunk_size = chunk_size
        self.num_left_chunks = num_left_chunks
        self.max_train_chunk = max_train_chunk
        self.full_context_prob = full_context_prob
        sub = self.front.subsampling
        # the first frame of a chunk waits for the rest of its chunk, and each output frame for its receptive field
        self.lookahead_frames = (max(chunk_size, 1) - 1) * sub.rate + sub.receptive_field - 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames."""
        return self.front.subsampling.output_lengths(lengths)

    def training_chunk(self) -> int:
        """Chunk size for the next training batch (0 = full context), drawn with torch's seeded generator."""
        if float(torch.rand(())) < self.full_context_prob:
            return 0
        return int(torch.randint(1, self.max_train_chunk + 1, ()))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.front(feats, lengths)
        chunk = self.training_chunk() if self.training else self.chunk_size
        mask = chunk_attention_mask(out_lengths, x.shape[1], chunk, self.num_left_chunks, self.num_heads)
        x = x.transpose(0, 1)
        for layer in self.layers:
            x, _, _ = layer(x, mask)
        return self.output(x.transpose(0, 1)).log_softmax(dim=-1), out_lengths

    # ---- chunk-wise inference (streaming.py's contract) ----

    def init_state(self, batch_size: int, device: torch.device) -> dict[str, Any]:
        """Nothing seen yet: no pending input, empty caches."""
        return {"feats": None, "frames": None, "subsampled": 0,
                "attn": [None] * len(self.layers), "conv": [None] * len(self.layers)}

    def _subsample_ready(self, state: dict[str, Any], final: bool) -> None:
        """Move every subsampled frame the buffered input allows from state["feats"] to state["frames"]."""
        sub = self.front.subsampling
        feats = state["feats"]
        if final and state["subsampled"] == 0 and 0 < feats.shape[1] < sub.receptive_field:
            feats = nn.functional.pad(feats, (0, 0, 0, sub.receptive_field - feats.shape[1]))  # as forward does
        count = (feats.shape[1] - sub.receptive_field) // sub.rate + 1 if feats.shape[1] >= sub.receptive_field else 0
        if count == 0:
            return
        x = self.front.embed(sub(feats[:, : (count - 1) * sub.rate + sub.receptive_field]), state["subsampled"])
        state["feats"] = feats[:, count * sub.rate:]
        state["subsampled"] += count
        state["frames"] = x if state["frames"] is None else torch.cat([state["frames"], x], dim=1)

    def _encode_chunk(self, x: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Run one chunk (B, T, D) through the layers with the caches; returns its log-probs."""
        x = x.transpose(0, 1)
        keep = self.num_left_chunks * self.chunk_size if self.num_left_chunks >= 0 and self.chunk_size > 0 else None
        for i, layer in enumerate(self.layers):
            x, keys, state["conv"][i] = layer(x, None, state["attn"][i], state["conv"][i])
            state["attn"][i] = keys if keep is None else keys[keys.shape[0] - min(keep, keys.shape[0]):]
        return self.output(x.transpose(0, 1)).log_softmax(dim=-1)

    @torch.no_grad()
    def forward_chunk(self, feats: torch.Tensor, state: dict[str, Any],
                      final: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
        """Next normalised features (B, T, F) -> log-probs (B, T', V) of every chunk completed so far (all at final)."""
        state["feats"] = feats if state["feats"] is None else torch.cat([state["feats"], feats], dim=1)
        self._subsample_ready(state, final)
        outputs = []
        chunk = self.chunk_size if self.chunk_size > 0 else None  # 0: full context, so everything waits for final
        frames = state["frames"]
        while frames is not None and frames.shape[1] > 0 and (
                final or (chunk is not None and frames.shape[1] >= chunk)):
            take = frames.shape[1] if chunk is None else min(chunk, frames.shape[1])
            outputs.append(self._encode_chunk(frames[:, :take], state))
            frames = frames[:, take:]
        state["frames"] = frames
        if not outputs:
            return feats.new_zeros(feats.shape[0], 0, self.output.out_features), state
        return torch.cat(outputs, dim=1), state
