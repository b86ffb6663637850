"""RecognizerStream on real speech: chunked recognition equals the whole utterance's; bad chunks are one line."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchaudio.functional as AF

from lit_asr.data.audio import load_audio
from lit_asr.errors import LitAsrError
from lit_asr.inference.recognizer import Recognizer
from lit_asr.tasks.train import build_parts
from tiny_checkpoint import run_config, tiny_checkpoint

TOLERANCE = 1e-4  # absolute, on log-probabilities: features to 1e-4, then the network, in float32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def streaming_checkpoint(tiny, tmp_path_factory):
    """model=deepspeech2_streaming_small trained one step (tiny learning rate) on the tiny dataset, saved as run.py's
    training does: streaming must survive the checkpoint round trip."""
    root = tmp_path_factory.mktemp("streaming")
    cfg = run_config(tiny, root, "model=deepspeech2_streaming_small", "augment=none", "scheduler=none",
                     "learning_rate=1e-7")
    pl.seed_everything(0)
    module, datamodule = build_parts(cfg)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(root / "model.ckpt")
    return root / "model.ckpt"


@pytest.fixture(scope="module")
def recognizer(streaming_checkpoint):
    with Recognizer.from_checkpoint(streaming_checkpoint, device="cpu") as rec:
        assert rec.streaming and rec.module.net.lookahead_frames == 6
        yield rec


@pytest.fixture(scope="module")
def streaming_module(recognizer):
    return recognizer.module


@pytest.fixture(scope="module")
def speech(tiny) -> torch.Tensor:
    return load_audio(sorted((tiny["root"] / "wav").glob("*.wav"))[1], 16000)


def pcm16(wave: torch.Tensor) -> bytes:
    return (wave.clamp(-1, 1 - 2 ** -15) * 32768).round().to(torch.int16).numpy().astype("<i2").tobytes()


def run_stream(recognizer: Recognizer, wave, step: int, sample_rate: int | None = None):
    """(stream, partials, transcript) for ``wave`` fed ``step`` samples (or bytes) at a time."""
    stream = recognizer.stream(sample_rate)
    partials = [stream.accept(wave[i:i + step]) for i in range(0, len(wave), step)]
    return stream, partials, stream.finish()


@pytest.mark.parametrize("chunk_ms", [100, 170, 600])
def test_stream_equals_whole_utterance(recognizer, speech, chunk_ms):
    whole = recognizer.log_probs([speech])[0]
    expected = recognizer.transcribe(speech)
    stream, partials, result = run_stream(recognizer, speech.numpy(), 16 * chunk_ms)
    assert stream.log_probs.shape == whole.shape
    np.testing.assert_allclose(stream.log_probs, whole, atol=TOLERANCE, rtol=0)
    assert expected.text, "a barely trained model still emits characters: the comparison is not vacuous"
    assert result.text == expected.text and result.duration == pytest.approx(expected.duration)
    assert [(t.token, t.start, t.end) for t in result.tokens] == \
        [(t.token, pytest.approx(t.start), pytest.approx(t.end)) for t in expected.tokens]
    # Greedy partials only grow, and the last one is the greedy transcript (the decoder here is greedy too).
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:])) and partials[-1] == expected.text


def test_pcm16_bytes_in_odd_sized_chunks(recognizer, speech):
    data = pcm16(speech)
    quantised = torch.from_numpy(np.frombuffer(data, "<i2").astype(np.float32) / 32768)
    _, _, result = run_stream(recognizer, data, 2 * 1601)  # 100.06 ms pieces: off the 10 ms frame grid
    assert result.text == recognizer.transcribe(quantised).text


def test_another_sample_rate_is_resampled(recognizer, speech):
    at_44k = AF.resample(speech, 16000, 44100)
    stream, _, result = run_stream(recognizer, at_44k, 4410, 44100)
    assert result.text == recognizer.transcribe(at_44k, sample_rate=44100).text
    assert result.duration == pytest.approx(len(at_44k) / 44100)
    np.testing.assert_allclose(stream.log_probs, recognizer.log_probs([AF.resample(at_44k, 44100, 16000)])[0],
                               atol=1e-3, rtol=0)  # log features of near-empty bands magnify 1e-7 resampling noise


def test_finish_uses_the_configured_beam_search_and_lm(streaming_module, tiny, speech):
    decoder = {"_target_": "lit_asr.decoding.beam_search.BeamSearchDecoder", "lang_model_path": str(tiny["lm"]),
               "alpha": 1.0, "beta": 1.0, "beam_size": 8, "cutoff_prob": 1.0, "cutoff_top_n": 40,
               "num_proc_bsearch": 1}
    with Recognizer(streaming_module, decoder=decoder, device="cpu") as rec:
        stream, _, result = run_stream(rec, speech, 1600)
        assert result.text == rec.transcribe(speech).text == rec.decoder.decode_batch([stream.log_probs])[0]


def test_bad_chunks_are_one_line_and_lose_nothing(recognizer, speech):
    stream = recognizer.stream()
    half = len(speech) // 2
    stream.accept(speech[:half])
    bad = [(b"\x01\x02\x03", "odd length"), (np.zeros(160, np.int16), "dtype int16"),
           (torch.zeros(160, dtype=torch.int32), "dtype torch.int32"), (np.zeros((2, 160), np.float32), "1-D"),
           (np.array([0.1, np.nan], np.float32), "non-finite"), ([0.1, 0.2], "not list"), ("audio.wav", "not str")]
    for chunk, message in bad:
        with pytest.raises(LitAsrError, match=message) as err:
            stream.accept(chunk)
        assert "\n" not in str(err.value)
    stream.accept(speech[half:])
    assert stream.finish().text == recognizer.transcribe(speech).text  # the refused chunks changed nothing
    for call in (lambda: stream.accept(speech[:1600]), stream.finish):
        with pytest.raises(LitAsrError, match="finished"):
            call()
    with pytest.raises(LitAsrError, match="positive"):
        recognizer.stream(sample_rate=0)


def test_empty_and_tiny_streams(recognizer):
    assert recognizer.stream().finish().text == ""
    stream = recognizer.stream()
    assert stream.accept(np.zeros(0, np.float32)) == ""
    result = stream.finish()
    assert result.duration == 0 and result.segments == []
    stream = recognizer.stream()
    stream.accept(0.01 * np.ones(100, np.float32))  # under one 25 ms window: one zero-padded frame, as a file
    assert len(stream.finish().segments) <= 1 and stream.log_probs.shape[0] == 1


def test_bidirectional_model_refuses_to_stream(tiny):
    with Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") as rec:
        with pytest.raises(LitAsrError, match="model=deepspeech2_streaming") as err:
            rec.stream()
        assert "\n" not in str(err.value)
