"""Shared fixtures: tiny audio files written on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tiny_data import synthesize


@pytest.fixture
def write_wav():
    """Factory: write a 16-bit sine-tone wav and return its path."""

    def write(path: str | Path, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1,
              freq: float = 220.0) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(round(seconds * sample_rate))) / sample_rate
        tone = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        soundfile.write(str(path), np.stack([tone] * channels, axis=1), sample_rate, subtype="PCM_16")
        return path

    return write


@pytest.fixture
def speak_wav():
    """Factory: speak Mandarin text with espeak-ng into a 16 kHz mono wav and return its path."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")

    def speak(path: str | Path, text: str, speed: int = 160, pitch: int = 50, sample_rate: int = 16000) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        synthesize(text, path, speed, pitch, sample_rate)
        return path

    return speak
