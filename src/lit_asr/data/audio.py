"""Reading audio files into mono float waveforms at the model's sample rate."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from lit_asr.errors import LitAsrError, first_line


def _reason(path: str | Path, exc: Exception) -> str:
    # libsndfile repeats the path ("Error opening '/a.wav': Format not recognised."); the message names it already.
    return first_line(exc).replace(f"Error opening {str(path)!r}: ", "")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) of an audio file, read from its header only."""
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise LitAsrError(f"cannot read audio {path}: {_reason(path, exc)}") from None
    return info.frames, info.samplerate, info.channels


def load_audio(path: str | Path | BinaryIO, sample_rate: int) -> torch.Tensor:
    """1-D float32 waveform (integer formats scaled to [-1, 1]), channels averaged, resampled to ``sample_rate``.

    ``path`` may also be a file-like object (a shard member's bytes; its ``name`` is used in messages).
    """
    source, name = (path, getattr(path, "name", "audio bytes")) if hasattr(path, "read") else (str(path), path)
    try:
        data, sr = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise LitAsrError(f"cannot read audio {name}: {_reason(name, exc)}") from None
    path = name
    if data.shape[0] == 0:
        raise LitAsrError(f"audio {path} holds no samples")
    if not np.isfinite(data).all():
        # Possible in float formats; one such sample would turn the whole batch's loss into NaN.
        raise LitAsrError(f"audio {path} holds non-finite samples (NaN or inf)")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        wave = AF.resample(wave, sr, sample_rate)
    return wave
