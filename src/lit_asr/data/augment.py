"""Training-time perturbations: waveform ones (speed, volume, shift, noise, resample, and the channel ones:
reverberation, band-limiting, mu-law quantisation, babble) and SpecAugment.

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


def _rms(wave: torch.Tensor) -> torch.Tensor:
    return wave.pow(2).mean().sqrt()


def decaying_noise_rir(rt60: float, sample_rate: int, direct_ratio_db: float = 0.0) -> torch.Tensor:
    """A room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB over ``rt60`` seconds.

    ``direct_ratio_db`` is the energy of the direct path over that of the reverberant tail.
    """
    length = max(2, int(rt60 * sample_rate))
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    # amplitude exp(-k t) is 10**(-60/20) at t = rt60: k = 3 ln(10) / rt60
    tail = torch.randn(length) * torch.exp(-3.0 * math.log(10.0) * t / rt60)
    tail[0] = 0.0
    tail *= 10 ** (-direct_ratio_db / 20) / tail.pow(2).sum().sqrt().clamp_min(1e-12)
    tail[0] = 1.0
    return tail


class ReverbPerturb(Perturbation):
    """Convolve with a generated room impulse response (exponentially decaying noise, random RT60).

    The output keeps the input's length and RMS level, so only the room changes, not the loudness.
    """

    def __init__(self, prob: float, min_rt60: float = 0.2, max_rt60: float = 0.9,
                 min_direct_ratio_db: float = -5.0, max_direct_ratio_db: float = 5.0):
        super().__init__(prob)
        self.min_rt60, self.max_rt60 = min_rt60, max_rt60
        self.min_direct_ratio_db, self.max_direct_ratio_db = min_direct_ratio_db, max_direct_ratio_db

    def apply(self, wave, sample_rate):
        rir = decaying_noise_rir(_uniform(self.min_rt60, self.max_rt60), sample_rate,
                                 _uniform(self.min_direct_ratio_db, self.max_direct_ratio_db))
        out = AF.fftconvolve(wave, rir)[: wave.numel()]
        level = _rms(out)
        if level == 0:
            return wave
        return (out * (_rms(wave) / level)).clamp(-1.0, 1.0)


class BandLimitPerturb(Perturbation):
    """Keep only a random pass band (telephone-like): no energy below ``low`` Hz or above ``high`` Hz.

    An ideal (FFT-domain) filter: cut-offs drawn from ``[min_low_hz, max_low_hz]`` and ``[min_high_hz, max_high_hz]``.
    """

    def __init__(self, prob: float, min_low_hz: float = 0.0, max_low_hz: float = 400.0,
                 min_high_hz: float = 3000.0, max_high_hz: float = 6000.0):
        super().__init__(prob)
        self.min_low_hz, self.max_low_hz = min_low_hz, max_low_hz
        self.min_high_hz, self.max_high_hz = min_high_hz, max_high_hz

    def apply(self, wave, sample_rate):
        low, high = _uniform(self.min_low_hz, self.max_low_hz), _uniform(self.min_high_hz, self.max_high_hz)
        spectrum = torch.fft.rfft(wave)
        freqs = torch.fft.rfftfreq(wave.numel(), 1.0 / sample_rate)
        spectrum[(freqs < low) | (freqs > high)] = 0
        return torch.fft.irfft(spectrum, n=wave.numel()).clamp(-1.0, 1.0)


class MuLawPerturb(Perturbation):
    """Mu-law companding to few quantisation levels: the granular noise of a low-bitrate telephone codec.

    256 levels is G.711's 8 bits per sample; fewer levels sound coarser.
    """

    def __init__(self, prob: float, quantization_channels: Sequence[int] = (64, 256)):
        super().__init__(prob)
        self.quantization_channels = list(quantization_channels)

    def apply(self, wave, sample_rate):
        levels = _choice(self.quantization_channels)
        return AF.mu_law_decoding(AF.mu_law_encoding(wave.clamp(-1.0, 1.0), levels), levels)


class BabblePerturb(Perturbation):
    """Add the sum of ``speakers`` other training utterances (babble) at a random SNR.

    Utterances are drawn from ``manifest`` (the training manifest): one of them may, rarely, be the utterance
    being perturbed itself.
    """

    def __init__(self, prob: float, manifest: str | None, min_snr_db: float = 0.0, max_snr_db: float = 20.0,
                 min_speakers: int = 3, max_speakers: int = 6):
        super().__init__(prob)
        self.min_snr_db, self.max_snr_db = min_snr_db, max_snr_db
        self.min_speakers, self.max_speakers = min_speakers, max_speakers
        self.files: list[str] = []
        if manifest and prob > 0:
            from lit_asr.data.manifest import read_manifest  # deferred: manifests need no augmentation

            entries, _ = read_manifest(manifest)
            self.files = [e.audio_filepath for e in entries]

    def _talker(self, num_samples: int, sample_rate: int) -> torch.Tensor | None:
        try:
            voice = load_audio(_choice(self.files), sample_rate)
        except LitAsrError as exc:  # one broken file must not end the epoch
            log.warning("babble utterance skipped: %s", exc)
            return None
        if voice.numel() < num_samples:
            voice = voice.repeat(math.ceil(num_samples / voice.numel()))
        start = int(torch.randint(voice.numel() - num_samples + 1, ()).item())
        voice = voice[start:start + num_samples]
        level = _rms(voice)
        return voice / level if level > 0 else None

    def apply(self, wave, sample_rate):
        if not self.files or wave.pow(2).sum() == 0:
            return wave
        count = int(torch.randint(self.min_speakers, self.max_speakers + 1, ()).item())
        talkers = [v for v in (self._talker(wave.numel(), sample_rate) for _ in range(count)) if v is not None]
        if not talkers:
            return wave
        babble = torch.stack(talkers).sum(0)
        snr = torch.tensor([_uniform(self.min_snr_db, self.max_snr_db)])
        return AF.add_noise(wave.unsqueeze(0), babble.unsqueeze(0), snr).squeeze(0).clamp(-1.0, 1.0)


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
