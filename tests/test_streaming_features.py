"""FeatureStream: speech fed in pieces of any size gives the frames of the whole waveform, resampled or not."""

import shutil

import pytest
import soundfile
import torch
import torchaudio.functional as AF

from lit_asr.data.features import FeatureExtractor, FeatureStream, StreamResampler
from tiny_data import synthesize

TOLERANCE = 1e-4  # absolute, on log features (float32 STFTs of equal samples, computed in other batch shapes)


def stream_features(extractor: FeatureExtractor, wave: torch.Tensor, chunk: int, rate: int) -> torch.Tensor:
    stream = FeatureStream(extractor, rate)
    pieces = [stream.accept(wave[i:i + chunk]) for i in range(0, wave.numel(), chunk)]
    return torch.cat(pieces + [stream.finish()])


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> torch.Tensor:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "s.wav"
    synthesize("床前明月光", path)
    return torch.from_numpy(soundfile.read(str(path), dtype="float32")[0])


@pytest.mark.parametrize("method, window_ms", [("fbank", 25.0), ("linear", 20.0)])
@pytest.mark.parametrize("chunk_ms", [10, 100, 130, 600])
def test_chunked_features_equal_whole_waveform(speech, method, window_ms, chunk_ms):
    extractor = FeatureExtractor(method=method, window_ms=window_ms)
    whole = extractor(speech)
    chunked = stream_features(extractor, speech, 16 * chunk_ms + 1, 16000)  # +1: pieces off the frame grid
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_other_rates_are_resampled_as_the_whole_file_would_be(speech, rate):
    extractor = FeatureExtractor()
    at_rate = AF.resample(speech, 16000, rate)
    resampled = AF.resample(at_rate, rate, 16000)  # what load_audio does to a whole file at that rate
    resampler = StreamResampler(rate, 16000)
    step = rate // 10 + 3
    pieces = [resampler.accept(at_rate[i:i + step]) for i in range(0, at_rate.numel(), step)]
    torch.testing.assert_close(torch.cat(pieces + [resampler.finish()]), resampled, atol=1e-6, rtol=0)
    whole = extractor(resampled)
    chunked = stream_features(extractor, at_rate, step, rate)
    assert chunked.shape == whole.shape
    # Samples agree to 1e-7; the log of a near-empty mel band (above 4 kHz after 8 kHz audio) magnifies that.
    torch.testing.assert_close(chunked, whole, atol=2e-3, rtol=0)


@pytest.mark.parametrize("samples", [0, 1, 399, 400, 401])
def test_shorter_than_a_window_and_edges(samples):
    extractor = FeatureExtractor()
    wave = 0.1 * torch.randn(samples)
    chunked = stream_features(extractor, wave, 7, 16000)
    expected = extractor(wave) if samples else torch.zeros(0, extractor.dim)  # a lone window is zero-padded
    assert chunked.shape == expected.shape
    torch.testing.assert_close(chunked, expected, atol=TOLERANCE, rtol=0)
