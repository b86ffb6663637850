"""A degraded copy of test utterances (telephone band, reverberation, noise), for decoding on flat posteriors.

Band limit and reverberation come from sox (``sinc``, ``reverb``); white noise at a fixed SNR is added with a
seeded generator, so the same inputs give the same copy.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from lit_asr.data.manifest import ManifestEntry
from lit_asr.errors import LitAsrError


def degrade_file(source: str | Path, target: Path, rng: np.random.Generator, band: str = "300-3400",
                 reverberance: int = 70, snr_db: float = 10.0) -> None:
    """``source`` band-limited, reverberated (sox) and with white noise at ``snr_db`` added, as 16-bit ``target``."""
    if shutil.which("sox") is None:
        raise LitAsrError("sox not found: install it (apt-get install sox) to make the degraded test copy")
    tmp = target.with_suffix(".sox.wav")
    subprocess.run(["sox", "-R", str(source), str(tmp), "sinc", band, "reverb", str(reverberance)],
                   check=True, capture_output=True)
    wave, sr = soundfile.read(tmp, dtype="float32")
    tmp.unlink()
    if wave.ndim > 1:  # reverb may widen to stereo
        wave = wave.mean(axis=1)
    power = float(np.mean(wave**2)) or 1e-10
    noisy = wave + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), size=wave.shape).astype(np.float32)
    soundfile.write(target, np.clip(noisy, -1.0, 1.0), sr, subtype="PCM_16")


def degraded_copy(entries: list[ManifestEntry], folder: Path, seed: int = 0, **settings) -> list[ManifestEntry]:
    """Degrade every entry's audio into ``folder``; the entries of the copies (same texts)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, entry in enumerate(entries):
        target = folder / f"{i:05d}.wav"
        degrade_file(entry.audio_filepath, target, rng, **settings)
        out.append(ManifestEntry(str(target.resolve()), soundfile.info(str(target)).duration, entry.text))
    return out
