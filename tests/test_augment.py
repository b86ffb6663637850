"""Perturbations change the audio the way their names say; `augment=none` leaves batches untouched."""

import torch

from lit_asr.data.augment import (NoisePerturb, ResamplePerturb, ShiftPerturb, SpecAugment, SpeedPerturb,
                                  VolumePerturb, WaveAugmentor)

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
