"""Perturbations change the audio the way their names say; `augment=none` leaves batches untouched."""

import math

import pytest
import torch

from lit_asr.data.augment import (BabblePerturb, BandLimitPerturb, MuLawPerturb, NoisePerturb, ResamplePerturb,
                                  ReverbPerturb, ShiftPerturb, SpecAugment, SpeedPerturb, VolumePerturb,
                                  WaveAugmentor, decaying_noise_rir)

SR = 16000


def _tone(seconds=1.0):
    t = torch.arange(int(SR * seconds)) / SR
    return 0.3 * torch.sin(2 * torch.pi * 440 * t)


def test_speed_changes_length():
    torch.manual_seed(0)
    out = SpeedPerturb(prob=1.0, factors=[1.1])(_tone(), SR)
    assert abs(out.numel() - SR / 1.1) < 5


def test_volume_scales_within_range():
    torch.manual_seed(0)
    wave = _tone()
    out = VolumePerturb(prob=1.0, min_gain_db=6.0, max_gain_db=6.0)(wave * 0.5, SR)
    assert torch.allclose(out, wave * 0.5 * 10 ** (6 / 20), atol=1e-4)


def test_shift_moves_signal():
    wave = torch.zeros(SR)
    wave[8000] = 1.0
    out = ShiftPerturb(prob=1.0, min_shift_ms=10, max_shift_ms=10)(wave, SR)
    assert int(out.argmax()) == 8000 - 160


def test_noise_hits_requested_snr():
    torch.manual_seed(0)
    wave = _tone()
    out = NoisePerturb(prob=1.0, min_snr_db=20, max_snr_db=20)(wave, SR)
    noise = out - wave
    snr = 10 * torch.log10(wave.pow(2).sum() / noise.pow(2).sum())
    assert abs(float(snr) - 20) < 0.5


def test_noise_from_manifest(tmp_path):
    import json

    import soundfile

    soundfile.write(tmp_path / "n.wav", (torch.randn(4000) * 0.1).numpy(), SR)
    (tmp_path / "noise.json").write_text(json.dumps({"audio_filepath": "n.wav", "duration": 0.25, "text": "noise"}))
    out = NoisePerturb(prob=1.0, min_snr_db=10, max_snr_db=10, noise_manifest=str(tmp_path / "noise.json"))(
        _tone(), SR)
    assert out.shape == (SR,) and not torch.allclose(out, _tone())


def test_resample_removes_high_frequencies():
    t = torch.arange(SR) / SR
    high = 0.3 * torch.sin(2 * torch.pi * 6000 * t)
    out = ResamplePerturb(prob=1.0, new_sample_rates=[8000])(high, SR)
    assert out[1000:-1000].abs().max() < 0.05  # 6 kHz cannot survive an 8 kHz round trip


def test_probability_zero_is_identity():
    wave = _tone()
    aug = WaveAugmentor([SpeedPerturb(0.0), VolumePerturb(0.0), NoisePerturb(0.0)])
    assert torch.equal(aug(wave, SR), wave)


def test_spec_augment_masks():
    torch.manual_seed(0)
    feats = torch.ones(200, 80)
    out = SpecAugment(prob=1.0, freq_masks=2, freq_width=10, time_masks=2, time_width=0.05)(feats)
    assert out.shape == feats.shape and (out == 0).any() and (out == 1).any()


# ---- channel perturbations (docs/quality.md) ----

def _band_energy(wave, low, high):
    spectrum = torch.fft.rfft(wave).abs().pow(2)
    freqs = torch.fft.rfftfreq(wave.numel(), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs <= high)].sum())


def _decay_time(out):
    """RT60 of a response from the 5..25 dB span of its Schroeder decay curve (T20, extrapolated to 60 dB)."""
    energy = out.pow(2).flip(0).cumsum(0).flip(0)
    db = 10 * torch.log10(energy / energy[0])
    return 3 * (int((db > -25).sum()) - int((db > -5).sum())) / SR


def test_band_limit_removes_energy_outside_the_drawn_band():
    torch.manual_seed(0)
    noise = torch.randn(SR) * 0.1
    aug = BandLimitPerturb(prob=1.0, min_low_hz=200, max_low_hz=400, min_high_hz=3000, max_high_hz=3500)
    for _ in range(5):
        out = aug(noise, SR)
        assert _band_energy(out, 3500.5, SR / 2) < 1e-6 * _band_energy(noise, 3500.5, SR / 2)
        assert _band_energy(out, 0, 199.5) < 1e-6 * _band_energy(noise, 0, 199.5)
        assert _band_energy(out, 400, 3000) == pytest.approx(_band_energy(noise, 400, 3000), rel=1e-3)


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_reverb_tail_follows_rt60(rt60):
    torch.manual_seed(0)
    impulse = torch.zeros(2 * SR)
    impulse[0] = 1.0
    out = ReverbPerturb(prob=1.0, min_rt60=rt60, max_rt60=rt60, min_direct_ratio_db=0, max_direct_ratio_db=0)(
        impulse, SR)
    assert _decay_time(out) == pytest.approx(rt60, rel=0.15)
    assert out[int(rt60 * SR) + 1:].abs().max() < 1e-6 * out.abs().max()  # FFT round-off only


def test_reverb_keeps_length_and_level():
    torch.manual_seed(0)
    wave = _tone()
    out = ReverbPerturb(prob=1.0)(wave, SR)
    assert out.shape == wave.shape and not torch.allclose(out, wave)
    assert float(out.pow(2).mean().sqrt()) == pytest.approx(float(wave.pow(2).mean().sqrt()), rel=1e-3)


def test_decaying_noise_rir_direct_to_reverberant_ratio():
    torch.manual_seed(0)
    rir = decaying_noise_rir(0.5, SR, direct_ratio_db=6.0)
    assert rir[0] == 1.0 and rir.numel() == SR // 2
    assert 10 * math.log10(1.0 / float(rir[1:].pow(2).sum())) == pytest.approx(6.0, abs=1e-3)


def test_mu_law_quantises_to_its_levels():
    wave = _tone()
    coarse = MuLawPerturb(prob=1.0, quantization_channels=[16])(wave, SR)
    fine = MuLawPerturb(prob=1.0, quantization_channels=[256])(wave, SR)
    assert len(torch.unique(coarse)) <= 16 and len(torch.unique(fine)) <= 256
    assert 0 < float((fine - wave).abs().max()) < float((coarse - wave).abs().max())


def _talkers(tmp_path, count=4):
    import json

    import soundfile

    lines = []
    for i in range(count):
        soundfile.write(tmp_path / f"t{i}.wav", (torch.randn(SR // 2) * 0.2).numpy(), SR)
        lines.append(json.dumps({"audio_filepath": f"t{i}.wav", "duration": 0.5, "text": "说话"}))
    (tmp_path / "train.json").write_text("\n".join(lines), encoding="utf-8")
    return str(tmp_path / "train.json")


def test_babble_mixes_other_utterances_at_the_drawn_snr(tmp_path):
    torch.manual_seed(0)
    wave = _tone()
    aug = BabblePerturb(prob=1.0, manifest=_talkers(tmp_path), min_snr_db=5, max_snr_db=5, min_speakers=3,
                        max_speakers=3)
    out = aug(wave, SR)
    babble = out - wave
    snr = 10 * torch.log10(wave.pow(2).sum() / babble.pow(2).sum())
    assert abs(float(snr) - 5) < 0.5
    assert torch.equal(BabblePerturb(prob=1.0, manifest=None)(wave, SR), wave)  # no talkers: unchanged


def _channel_perturbations(tmp_path):
    return [ReverbPerturb(1.0), BandLimitPerturb(1.0), MuLawPerturb(1.0, quantization_channels=[16, 64, 256]),
            BabblePerturb(1.0, manifest=_talkers(tmp_path))]


def test_channel_perturbations_are_deterministic_under_a_seed(tmp_path):
    wave = _tone() * torch.linspace(0.1, 1.0, SR)
    for aug in _channel_perturbations(tmp_path):
        torch.manual_seed(7)
        first = aug(wave, SR)
        torch.manual_seed(7)
        again = aug(wave, SR)
        outputs = set()
        for seed in range(8):
            torch.manual_seed(seed)
            outputs.add(aug(wave, SR).numpy().tobytes())
        assert torch.equal(first, again), type(aug).__name__
        assert len(outputs) > 1, type(aug).__name__  # the seed does choose the draw


def test_channel_perturbations_respect_their_probability(tmp_path):
    wave = _tone()
    for aug in _channel_perturbations(tmp_path):
        aug.prob = 0.0
        assert torch.equal(aug(wave, SR), wave)
