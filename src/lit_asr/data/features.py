"""Acoustic features (log-mel filterbank or MASR's linear spectrogram) and their normalisation."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchaudio
import torchaudio.functional as AF
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


class StreamResampler:
    """Resamples a waveform arriving in pieces to exactly what ``torchaudio.functional.resample`` gives the whole.

    torchaudio turns each block of ``orig`` input samples (rates divided by their gcd) into ``new`` output samples
    with a sinc kernel reaching ``width`` samples either side; a block is emitted once that context has arrived,
    by resampling a stretch that starts whole blocks of context earlier, so every kept sample sees the same input.
    """

    def __init__(self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
        g = math.gcd(orig_freq, new_freq)
        self.orig, self.new = orig_freq // g, new_freq // g
        # torchaudio's kernel half-width for its defaults (lowpass_filter_width=6, rolloff=0.99), in whole blocks.
        width = math.ceil(lowpass_filter_width * self.orig / (rolloff * min(self.orig, self.new)))
        self.context = math.ceil(width / self.orig)
        self.held = torch.zeros(0)
        self.held_from = 0  # global block index of held[0]
        self.next_block = 0  # first block not emitted yet
        self.received = 0

    def _emit(self, end_block: int, end_sample: int) -> torch.Tensor:
        """Output of blocks [next_block, end_block), resampling input up to ``end_sample``."""
        if end_block <= self.next_block:
            return self.held.new_zeros(0)
        start_block = max(0, self.next_block - self.context)
        segment = self.held[(start_block - self.held_from) * self.orig:end_sample - self.held_from * self.orig]
        out = AF.resample(segment, self.orig, self.new)
        out = out[(self.next_block - start_block) * self.new:(end_block - start_block) * self.new]
        self.next_block = end_block
        keep_from = max(0, end_block - self.context)
        self.held = self.held[(keep_from - self.held_from) * self.orig:]
        self.held_from = keep_from
        return out

    def accept(self, wave: torch.Tensor) -> torch.Tensor:
        """The output samples the input so far determines."""
        self.held = torch.cat([self.held.to(wave), wave])
        self.received += wave.numel()
        end_block = self.received // self.orig - self.context
        return self._emit(end_block, (end_block + self.context) * self.orig)

    def finish(self) -> torch.Tensor:
        """The rest, as torchaudio ends the whole waveform (zeros beyond the last sample, length rounded up)."""
        total = -(-self.new * self.received // self.orig)  # ceil: torchaudio's output length
        return self._emit(-(-total // self.new), self.received)  # the slice stops at ``total`` by itself


class FeatureStream:
    """Waveform pieces of any size (at ``sample_rate``) -> the feature frames they complete.

    Leftover samples are carried to the next piece, so the frames, concatenated, equal ``extractor`` on the whole
    waveform; a different input rate is resampled on the way, chunk-exact as well.
    """

    def __init__(self, extractor: FeatureExtractor, sample_rate: int | None = None):
        self.extractor = extractor
        self.device = next(extractor.buffers()).device  # the STFT window's: where the module was moved
        rate = sample_rate or extractor.sample_rate
        self.resampler = StreamResampler(rate, extractor.sample_rate) if rate != extractor.sample_rate else None
        self.pending = torch.zeros(0, device=self.device)
        self.frames = 0  # frames emitted so far
        self.samples = 0  # samples (at the model's rate) received so far

    def _frames(self, wave: torch.Tensor) -> torch.Tensor:
        self.pending = torch.cat([self.pending, wave.to(self.device, torch.float32)])
        self.samples += wave.numel()
        n = self.extractor.num_frames(self.pending.numel())
        if n == 0:
            return torch.zeros(0, self.extractor.dim, device=self.device)
        hop = self.extractor.hop_length
        feats = self.extractor(self.pending[:(n - 1) * hop + self.extractor.win_length])
        self.pending = self.pending[n * hop:]
        self.frames += n
        return feats

    def accept(self, wave: torch.Tensor) -> torch.Tensor:
        """Frames (frames, dim) completed by the next samples (1-D float, at the stream's rate)."""
        return self._frames(self.resampler.accept(wave) if self.resampler else wave)

    def finish(self) -> torch.Tensor:
        """The frames still owed at the end (input shorter than one window still gives its one padded frame)."""
        feats = self._frames(self.resampler.finish() if self.resampler else self.pending[:0])
        if self.frames == 0 and self.samples > 0:
            self.frames = 1
            return self.extractor(self.pending)
        return feats


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
        what = "a folder" if path.is_dir() else "not found"
        raise LitAsrError(f"normalisation file {what}: {path} (run scripts/prepare_data.py first)")
    if path.suffix == ".json":
        raise _masr_statistics(path)
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


def _masr_statistics(path: Path) -> LitAsrError:
    """Why a JSON statistics file (MASR's ``mean_istd.json``) is refused, and the command that replaces it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        is_masr = isinstance(data, dict) and {"mean", "istd"} <= set(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        is_masr = False
    what = (f"MASR's mean_istd.json (statistics of MASR's {data.get('feature_method', 'own')} features, which "
            "lit-asr computes differently, so they would normalise its features wrongly)" if is_masr
            else "not a lit-asr normalisation file (mean_std.npz)")
    return LitAsrError(f"{path} is {what}: compute lit-asr's from MASR's manifests with `python "
                       "scripts/prepare_data.py masr --train-manifest M.train --test-manifest M.test`, then "
                       "mean_std_path=dataset/mean_std.npz")


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
