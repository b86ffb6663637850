"""Token times from CTC output: the frames each emitted token takes, turned into seconds.

Greedy decoding times a token by its CTC spike (the run of frames where it is the argmax). Any other decoder's
text (beam search, with LM and hotwords) is timed by CTC forced alignment of that text to the same log-probs
(torchaudio), which gives the spikes of the most likely path that spells exactly that text. pyctcdecode's own
word frames are not used: when it merges beams that spell the same text it keeps the frames of whichever beam
came first, not of the best one (pyctcdecode 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchaudio.functional as AF

from lit_asr.inference.result import TokenTime

TokenFrames = tuple[str, int, int]  # (token, first frame, one past the last frame)


def token_runs(path: np.ndarray, labels: Sequence[str], blank_id: int = 0) -> list[TokenFrames]:
    """The tokens of a frame-by-frame CTC path with their runs of frames; blanks, spaces and labels that are
    never written out (empty, e.g. ``<unk>`` mapped to "") get no time."""
    path = np.asarray(path)
    if len(path) == 0:
        return []
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change]).tolist()
    ends = np.concatenate([change, [len(path)]]).tolist()
    out = []
    for start, end in zip(starts, ends):
        token_id = int(path[start])
        label = labels[token_id] if token_id != blank_id else ""
        if label.strip():
            out.append((label, start, end))
    return out


def greedy_token_frames(log_probs: np.ndarray, labels: Sequence[str], blank_id: int = 0) -> list[TokenFrames]:
    """Each token of the best path with the run of frames where it is the argmax (its CTC spike)."""
    return token_runs(np.asarray(log_probs).argmax(axis=-1), labels, blank_id)


def aligned_token_frames(log_probs: np.ndarray, text: str, labels: Sequence[str],
                         blank_id: int = 0) -> list[TokenFrames]:
    """The frames of each character of ``text`` on the most likely CTC path that spells it (forced alignment)."""
    ids_of = {label: i for i, label in enumerate(labels) if label and i != blank_id}
    targets = [ids_of[ch] for ch in text if ch in ids_of]
    if not targets or len(log_probs) == 0:
        return []
    emissions = torch.as_tensor(np.asarray(log_probs, dtype=np.float32))[None]
    try:
        path, _ = AF.forced_align(emissions, torch.tensor([targets], dtype=torch.int32), blank=blank_id)
    except RuntimeError:  # the text needs more frames than there are (cannot come from these log-probs)
        return []
    return token_runs(path[0].numpy(), labels, blank_id)


def frames_to_times(frames: Sequence[TokenFrames], frame_seconds: float, offset: float = 0.0) -> list[TokenTime]:
    """Token times in seconds from ``offset``, one output frame lasting ``frame_seconds``."""
    return [TokenTime(token, offset + start * frame_seconds, offset + end * frame_seconds)
            for token, start, end in frames]
