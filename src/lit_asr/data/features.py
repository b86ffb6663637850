"""Acoustic features (log-mel filterbank or MASR's linear spectrogram) and their normalisation."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from lit_asr.errors import LitAsrError, first_line


class FeatureExtractor(nn.Module):
    """Waveform (samples,) -> log features (frames, dim); ``method`` is ``fbank`` or ``linear``."""

    def __init__(
        self,
        method: str = "fbank",
        sample_rate: int = 16000,
        n_mels: int = 80,
        window_ms: float = 25.0,
        stride_ms: float = 10.0,
        eps: float = 1e-10,
    ):
        super().__init__()
        if method not in ("fbank", "linear"):
            raise LitAsrError(f"features.method must be 'fbank' or 'linear', not {method!r}")
        self.method = method
        self.sample_rate = sample_rate
        self.eps = eps
        n_fft = int(round(sample_rate * window_ms / 1000))
        self.hop_length = int(round(sample_rate * stride_ms / 1000))
        if method == "fbank":
            self.transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=self.hop_length, n_mels=n_mels, center=False
            )
            self.dim = n_mels
        else:
            self.transform = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=self.hop_length, center=False)
            self.dim = n_fft // 2 + 1
        self.win_length = n_fft
        self.config = {
            "method": method, "sample_rate": sample_rate, "n_mels": n_mels,
            "window_ms": window_ms, "stride_ms": stride_ms,
        }

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples."""
        return max(0, (num_samples - self.win_length) // self.hop_length + 1)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.numel() < self.win_length:
            wave = torch.nn.functional.pad(wave, (0, self.win_length - wave.numel()))
        return torch.log(self.transform(wave) + self.eps).transpose(-1, -2).contiguous()


class Normalizer(nn.Module):
    """Per-dimension mean/std normalisation with statistics from ``mean_std.npz``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.mean) / self.std


def save_mean_std(path: str | Path, mean: np.ndarray, std: np.ndarray, feature_config: dict, count: int) -> None:
    """Write normalisation statistics with the feature settings they were computed for."""
    np.savez(path, mean=mean.astype(np.float32), std=std.astype(np.float32),
             feature_config=json.dumps(feature_config, sort_keys=True), count=count)


def load_mean_std(path: str | Path, feature_config: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``mean_std.npz``; if ``feature_config`` is given, refuse statistics made for other features."""
    path = Path(path)
    if not path.is_file():
        raise LitAsrError(f"normalisation file not found: {path} (run scripts/prepare_data.py first)")
    try:
        with np.load(path, allow_pickle=False) as data:
            mean, std = data["mean"], data["std"]
            saved = json.loads(str(data["feature_config"])) if "feature_config" in data else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # not an npz, pickled objects, ...
        raise LitAsrError(f"cannot read normalisation file {path}: {first_line(exc)} "
                          "(re-run scripts/prepare_data.py)") from None
    if feature_config is not None and saved is not None and saved != dict(feature_config):
        raise LitAsrError(
            f"{path} was computed for features {saved}, but the config asks for {dict(feature_config)}: "
            "re-run scripts/prepare_data.py with the same features"
        )
    return mean, std


def compute_mean_std(feature_batches) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and std over all frames of an iterable of (frames, dim) tensors, in float64."""
    total = None
    total_sq = None
    count = 0
    for feats in feature_batches:
        f = feats.double()
        total = f.sum(0) if total is None else total + f.sum(0)
        total_sq = (f * f).sum(0) if total_sq is None else total_sq + (f * f).sum(0)
        count += f.shape[0]
    if count == 0:
        raise LitAsrError("no frames to compute normalisation statistics from")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.numpy(), std.numpy(), count
