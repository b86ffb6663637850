"""Training-time perturbations: waveform ones (speed, volume, shift, noise, resample) and SpecAugment.

Each perturbation fires with its own probability; all draw from torch's RNG so Lightning's
``seed_everything(workers=True)`` makes them reproducible per worker.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torchaudio
import torchaudio.functional as AF

from lit_asr.data.audio import load_audio
from lit_asr.errors import LitAsrError

log = logging.getLogger(__name__)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def _choice(options: Sequence):
    return options[int(torch.randint(len(options), ()).item())]


class Perturbation:
    """Base class: ``__call__`` applies :meth:`apply` with probability ``prob``."""

    def __init__(self, prob: float):
        self.prob = prob

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if self.prob > 0 and torch.rand(()).item() < self.prob:
            return self.apply(wave, sample_rate)
        return wave

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        raise NotImplementedError


class SpeedPerturb(Perturbation):
    """Kaldi-style speed change (tempo and pitch together) by resampling."""

    def __init__(self, prob: float, factors: Sequence[float] = (0.9, 1.0, 1.1)):
        super().__init__(prob)
        self.factors = list(factors)

    def apply(self, wave, sample_rate):
        factor = _choice(self.factors)
        if factor == 1.0:
            return wave
        # Playing sample_rate*factor samples per second == resampling from sr*factor down to sr.
        return AF.resample(wave, int(round(sample_rate * factor)), sample_rate)


class VolumePerturb(Perturbation):
    """Random gain in decibels."""

    def __init__(self, prob: float, min_gain_db: float = -15.0, max_gain_db: float = 15.0):
        super().__init__(prob)
        self.min_gain_db, self.max_gain_db = min_gain_db, max_gain_db

    def apply(self, wave, sample_rate):
        return AF.gain(wave, _uniform(self.min_gain_db, self.max_gain_db)).clamp(-1.0, 1.0)


class ShiftPerturb(Perturbation):
    """Shift the audio in time by up to ``max_shift_ms`` either way, padding with silence."""

    def __init__(self, prob: float, min_shift_ms: float = -5.0, max_shift_ms: float = 5.0):
        super().__init__(prob)
        self.min_shift_ms, self.max_shift_ms = min_shift_ms, max_shift_ms

    def apply(self, wave, sample_rate):
        shift = int(_uniform(self.min_shift_ms, self.max_shift_ms) * sample_rate / 1000)
        if shift == 0 or abs(shift) >= wave.numel():
            return wave
        out = torch.zeros_like(wave)
        if shift > 0:
            out[:-shift] = wave[shift:]
        else:
            out[-shift:] = wave[:shift]
        return out


class NoisePerturb(Perturbation):
    """Add noise at a random SNR: clips from ``noise_manifest`` when given, else synthetic coloured noise."""

    def __init__(self, prob: float, min_snr_db: float = 10.0, max_snr_db: float = 50.0,
                 noise_manifest: str | None = None):
        super().__init__(prob)
        self.min_snr_db, self.max_snr_db = min_snr_db, max_snr_db
        self.noise_files: list[str] = []
        if noise_manifest:
            from lit_asr.data.manifest import read_manifest  # deferred: manifests need no augmentation

            entries, _ = read_manifest(noise_manifest)
            self.noise_files = [e.audio_filepath for e in entries]

    def _noise(self, num_samples: int, sample_rate: int) -> torch.Tensor:
        noise = None
        if self.noise_files:
            try:
                noise = load_audio(_choice(self.noise_files), sample_rate)
            except LitAsrError as exc:  # a broken noise clip must not end the epoch: synthetic noise this time
                log.warning("noise clip skipped: %s", exc)
        if noise is not None:
            if noise.numel() < num_samples:
                noise = noise.repeat(math.ceil(num_samples / noise.numel()))
            start = int(torch.randint(noise.numel() - num_samples + 1, ()).item())
            return noise[start:start + num_samples]
        white = torch.randn(num_samples)
        # A random spectral tilt between white (0) and brown (-2) noise, so the noise is not always flat.
        tilt = _uniform(-2.0, 0.0)
        spectrum = torch.fft.rfft(white)
        freqs = torch.arange(1, spectrum.numel() + 1, dtype=torch.float32)
        return torch.fft.irfft(spectrum * freqs.pow(tilt / 2), n=num_samples)

    def apply(self, wave, sample_rate):
        noise = self._noise(wave.numel(), sample_rate)
        snr = torch.tensor([_uniform(self.min_snr_db, self.max_snr_db)])
        if wave.pow(2).sum() == 0 or noise.pow(2).sum() == 0:
            return wave
        return AF.add_noise(wave.unsqueeze(0), noise.unsqueeze(0), snr).squeeze(0).clamp(-1.0, 1.0)


class ResamplePerturb(Perturbation):
    """Down-sample and back (telephone-band or other lower-rate recordings)."""

    def __init__(self, prob: float, new_sample_rates: Sequence[int] = (8000,)):
        super().__init__(prob)
        self.new_sample_rates = list(new_sample_rates)

    def apply(self, wave, sample_rate):
        low = _choice(self.new_sample_rates)
        return AF.resample(AF.resample(wave, sample_rate, low), low, sample_rate)


class SpecAugment:
    """Frequency and time masks on (frames, dim) features (Park et al. 2019), via torchaudio's masking."""

    def __init__(self, prob: float = 1.0, freq_masks: int = 2, freq_width: int = 15,
                 time_masks: int = 2, time_width: float = 0.05):
        self.prob = prob
        self.freq_masks, self.time_masks, self.time_width = freq_masks, time_masks, time_width
        self.freq = torchaudio.transforms.FrequencyMasking(freq_width)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        if self.prob <= 0 or torch.rand(()).item() >= self.prob:
            return feats
        spec = feats.t().unsqueeze(0)  # torchaudio masks (channel, freq, time)
        for _ in range(self.freq_masks):
            spec = self.freq(spec)
        # Time masks scale with the utterance: at most time_width of its frames each.
        width = max(1, int(self.time_width * spec.shape[-1]))
        time = torchaudio.transforms.TimeMasking(width)
        for _ in range(self.time_masks):
            spec = time(spec)
        return spec.squeeze(0).t()


class WaveAugmentor:
    """Applies a list of waveform perturbations in order."""

    def __init__(self, perturbations: Sequence[Perturbation] = ()):
        self.perturbations = list(perturbations)

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        for p in self.perturbations:
            wave = p(wave, sample_rate)
        return wave
