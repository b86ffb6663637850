"""Greedy (best-path) CTC decoding: argmax per frame, merge repeats, drop blanks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lit_asr.data.text import normalize_text
from lit_asr.data.vocabulary import UNK


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0) -> list[list[int]]:
    """Token ids per utterance from (B, T, V) log-probabilities and valid lengths (B,)."""
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for seq, n in zip(best, lengths.cpu().tolist()):
        seq = torch.unique_consecutive(seq[:n])
        out.append(seq[seq != blank_id].tolist())
    return out


class GreedyDecoder:
    """Best-path decoder with the same ``decode_batch`` interface as the beam-search decoder."""

    def __init__(self, labels: Sequence[str], blank_id: int = 0):
        # <unk> is never written out: an unknown character is better dropped than shown as a tag.
        self.labels = ["" if (i == blank_id or lab == UNK) else lab for i, lab in enumerate(labels)]
        self.blank_id = blank_id

    def decode_batch(self, log_probs: Sequence[np.ndarray]) -> list[str]:
        """Normalised text per utterance from (frames, vocab) log-probabilities already trimmed to their lengths."""
        texts = []
        for lp in log_probs:
            ids = greedy_decode(torch.as_tensor(lp)[None], torch.tensor([len(lp)]), self.blank_id)[0]
            # Normalised as references and beam-search output are ("明 月" -> "明月", runs of spaces -> one).
            texts.append(normalize_text("".join(self.labels[i] for i in ids)))
        return texts

    def close(self) -> None:
        """Nothing to release; present for symmetry with the beam-search decoder."""
