"""Token times from CTC output: frames of each emitted token (greedy spikes), turned into seconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lit_asr.inference.result import TokenTime

TokenFrames = tuple[str, int, int]  # (token, first frame, one past the last frame)


def greedy_token_frames(log_probs: np.ndarray, labels: Sequence[str], blank_id: int = 0) -> list[TokenFrames]:
    """Each token of the best path with the run of frames where it is the argmax (its CTC spike).

    Blanks, spaces and labels that are never written out (empty, e.g. ``<unk>`` mapped to "") get no time.
    """
    best = np.asarray(log_probs).argmax(axis=-1)
    if len(best) == 0:
        return []
    change = np.flatnonzero(np.diff(best)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(best)]])
    out = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        token_id = int(best[start])
        label = labels[token_id] if token_id != blank_id else ""
        if label.strip():
            out.append((label, start, end))
    return out


def frames_to_times(frames: Sequence[TokenFrames], frame_seconds: float, offset: float = 0.0) -> list[TokenTime]:
    """Token times in seconds from ``offset``, one output frame lasting ``frame_seconds``."""
    return [TokenTime(token, offset + start * frame_seconds, offset + end * frame_seconds)
            for token, start, end in frames]
