"""Features, normalisation statistics and audio loading."""

import numpy as np
import pytest
import soundfile
import torch

from lit_asr.data.audio import load_audio
from lit_asr.data.features import FeatureExtractor, compute_mean_std, load_mean_std, save_mean_std
from lit_asr.errors import LitAsrError


@pytest.mark.parametrize("method, dim", [("fbank", 80), ("linear", 161)])
def test_feature_shapes(method, dim):
    fe = FeatureExtractor(method=method, window_ms=25.0 if method == "fbank" else 20.0)
    wave = torch.randn(16000) * 0.1
    feats = fe(wave)
    assert feats.shape == (fe.num_frames(16000), dim) and fe.dim == dim
    assert torch.isfinite(feats).all()


def test_mean_std_roundtrip_and_mismatch(tmp_path):
    fe = FeatureExtractor()
    mean, std, count = compute_mean_std([fe(torch.randn(8000)), fe(torch.randn(4000))])
    assert mean.shape == (80,) and count == fe.num_frames(8000) + fe.num_frames(4000)
    path = tmp_path / "mean_std.npz"
    save_mean_std(path, mean, std, fe.config, count)
    m, s = load_mean_std(path, fe.config)
    np.testing.assert_allclose(m, mean, rtol=1e-6)
    with pytest.raises(LitAsrError, match="re-run scripts/prepare_data.py"):
        load_mean_std(path, FeatureExtractor(method="linear").config)
    with pytest.raises(LitAsrError, match="not found"):
        load_mean_std(tmp_path / "nope.npz")


def test_load_audio_mixes_and_resamples(tmp_path):
    stereo = np.stack([np.full(8000, 0.5), np.full(8000, -0.1)], axis=1).astype("float32")
    soundfile.write(tmp_path / "s.wav", stereo, 8000)
    wave = load_audio(tmp_path / "s.wav", 16000)
    assert wave.ndim == 1 and abs(wave.numel() - 16000) <= 1
    assert abs(float(wave[4000:12000].mean()) - 0.2) < 1e-2
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(LitAsrError, match="cannot read audio"):
        load_audio(tmp_path / "bad.wav", 16000)
