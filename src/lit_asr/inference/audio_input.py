"""Audio handed to the recogniser (a path, raw file bytes or a waveform), read as mono float32 by time range.

Files and bytes stay open and are read only where asked, so a long recording never has to fit in memory.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from lit_asr.errors import LitAsrError, first_line


class AudioInput:
    """Mono audio resampled to ``sample_rate`` on reading; ``duration`` in seconds. Close it when done."""

    def __init__(self, name: str, rate: int, sample_rate: int, file: soundfile.SoundFile | None = None,
                 wave: np.ndarray | None = None):
        self.name = name
        self.rate = rate  # of the input
        self.sample_rate = sample_rate  # of what read() returns
        self._file = file
        self._wave = wave
        self.frames = file.frames if file is not None else len(wave)
        if self.frames <= 0:
            self.close()
            raise LitAsrError(f"audio {name} holds no samples")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    def read(self, start: float = 0.0, end: float | None = None, sample_rate: int | None = None) -> torch.Tensor:
        """Samples from ``start`` to ``end`` seconds (default: to the end), mono float32 at ``sample_rate``."""
        first = min(self.frames, max(0, int(round(start * self.rate))))
        last = self.frames if end is None else min(self.frames, max(first, int(round(end * self.rate))))
        if self._file is not None:
            try:
                self._file.seek(first)
                data = self._file.read(last - first, dtype="float32", always_2d=True).mean(axis=1)
            except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for damaged files
                raise LitAsrError(f"cannot read audio {self.name}: {first_line(exc)}") from None
        else:
            data = self._wave[first:last]
        if not np.isfinite(data).all():
            raise LitAsrError(f"audio {self.name} holds non-finite samples (NaN or inf)")
        wave = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        target = sample_rate or self.sample_rate
        return AF.resample(wave, self.rate, target) if self.rate != target and len(wave) else wave

    def blocks(self, seconds: float, sample_rate: int | None = None) -> Iterator[torch.Tensor]:
        """The whole input in consecutive blocks of ``seconds`` (the last one shorter)."""
        start = 0.0
        while start < self.duration:
            yield self.read(start, start + seconds, sample_rate)
            start += seconds

    def close(self) -> None:
        """Release the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "AudioInput":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_file(source: str | io.BytesIO, name: str) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(source)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types for unreadable input
        # libsndfile repeats the source ("Error opening '/a.wav': Format not recognised."); the message names it
        reason = re.sub(r"^Error opening .*?: ", "", first_line(exc))
        raise LitAsrError(f"cannot read audio {name}: {reason}") from None


def _as_mono(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind in "iu":  # integer PCM: scale to [-1, 1] as soundfile does
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    elif array.dtype.kind != "f":
        raise LitAsrError(f"audio {name} must hold numbers, not {array.dtype}")
    if array.ndim == 2:  # (samples, channels); the shorter axis is taken as channels
        array = array.mean(axis=1 if array.shape[1] <= array.shape[0] else 0)
    if array.ndim != 1:
        raise LitAsrError(f"audio {name} must be (samples,) or (samples, channels), got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def open_audio(audio: object, sample_rate: int, input_rate: int | None = None) -> AudioInput:
    """An :class:`AudioInput` for a path, raw file bytes (wav/flac/ogg...) or a waveform at ``input_rate``.

    ``input_rate`` is the waveform's sample rate (default: ``sample_rate``); files carry their own.
    """
    if isinstance(audio, (str, Path)):
        path = Path(audio)
        if not path.is_file():
            raise LitAsrError(f"audio not found: {path}")
        file = _open_file(str(path), str(path))
        return AudioInput(str(path), file.samplerate, sample_rate, file=file)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        if len(audio) == 0:
            raise LitAsrError("audio <bytes> is empty")
        file = _open_file(io.BytesIO(bytes(audio)), "<bytes>")
        return AudioInput("<bytes>", file.samplerate, sample_rate, file=file)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if isinstance(audio, np.ndarray):
        rate = input_rate or sample_rate
        if rate <= 0:
            raise LitAsrError(f"sample_rate must be positive, got {rate}")
        return AudioInput("<array>", int(rate), sample_rate, wave=_as_mono(audio, "<array>"))
    raise LitAsrError(f"audio must be a path, file bytes or a waveform array, not {type(audio).__name__}")
