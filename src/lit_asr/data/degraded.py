"""A fixed degraded copy of a test set: every utterance through one channel (e.g. band-limit + reverb + noise).

The channel is a list of the training perturbations (``conf/augment/degraded_test.yaml``); each utterance gets
its own seed (``seed`` and its place in the manifest), so the copy is the same on every machine and run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm import tqdm

from lit_asr.data.audio import load_audio
from lit_asr.data.augment import WaveAugmentor
from lit_asr.data.manifest import ManifestEntry
from lit_asr.errors import LitAsrError


def load_channel(path: str | Path) -> WaveAugmentor:
    """The perturbations listed under ``wave:`` in an augment config, as one augmentor."""
    path = Path(path)
    if not path.is_file():
        raise LitAsrError(f"degradation config not found: {path}")
    conf = OmegaConf.load(path)
    return WaveAugmentor([instantiate(p) for p in conf.get("wave") or []])


def degrade(entries: Sequence[ManifestEntry], channel: WaveAugmentor, wav_dir: str | Path, *, seed: int,
            sample_rate: int = 16000) -> list[ManifestEntry]:
    """Write ``wav_dir/NNNNN.wav`` for every entry through ``channel``; returns their manifest entries."""
    wav_dir = Path(wav_dir)
    wav_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, entry in enumerate(tqdm(entries, desc="degraded test set", unit="utt", mininterval=1.0)):
        wave = load_audio(entry.audio_filepath, sample_rate)
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed * 1_000_003 + i)
            wave = channel(wave, sample_rate)
        path = wav_dir / f"{i:05d}.wav"
        soundfile.write(str(path), np.clip(wave.numpy(), -1.0, 1.0), sample_rate, subtype="PCM_16")
        out.append(ManifestEntry(str(path.resolve()), wave.numel() / sample_rate, entry.text))
    return out
