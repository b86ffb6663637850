"""The Recognizer on the tiny checkpoint: every kind of input, batches, times, devices, threads, bad input."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile
import torch

from lit_asr.data.audio import load_audio
from lit_asr.errors import LitAsrError
from lit_asr.inference.device import resolve_device
from lit_asr.inference.recognizer import Recognizer
from lit_asr.inference.result import Transcript
from tiny_checkpoint import tiny_checkpoint
from tiny_data import UNREADABLE_VARIANTS, write_audio_variants


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def recognizer(tiny):
    with Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") as rec:
        yield rec


@pytest.fixture(scope="module")
def speech(tiny):
    return sorted((tiny["root"] / "wav").glob("*.wav"))[0]


def test_path_bytes_and_array_give_the_module_greedy_transcript(recognizer, speech):
    wave = load_audio(speech, 16000)
    expected = recognizer.module.transcribe([wave])[0][0]
    assert expected, "the tiny checkpoint should emit something"
    for audio in (speech, str(speech), speech.read_bytes(), wave, wave.numpy()):
        result = recognizer.transcribe(audio)
        assert isinstance(result, Transcript)
        assert result.text == expected
        assert result.duration == pytest.approx(len(wave) / 16000, abs=1e-3)
        assert [s.text for s in result.segments] == [expected]


def test_any_rate_and_stereo(recognizer, speech):
    wave, rate = soundfile.read(str(speech), dtype="float32")
    reference = recognizer.transcribe(speech).text
    stereo = np.stack([wave, wave], axis=1)
    assert recognizer.transcribe(stereo, sample_rate=rate).text == reference
    assert recognizer.transcribe(torch.from_numpy(stereo.T.copy()), sample_rate=rate).text == reference
    buf = io.BytesIO()
    soundfile.write(buf, stereo, rate, format="FLAC")
    assert recognizer.transcribe(buf.getvalue()).text == reference
    # 44.1 kHz in, resampled to 16 kHz: the features change a little, the duration does not
    import torchaudio.functional as AF

    hi = AF.resample(torch.from_numpy(wave), rate, 44100)
    result = recognizer.transcribe(hi, sample_rate=44100)
    assert result.duration == pytest.approx(len(wave) / rate, abs=1e-3) and result.text


def test_batch_equals_the_module_batch_and_times_are_ordered(recognizer, tiny):
    files = sorted((tiny["root"] / "wav").glob("*.wav"))[:3]
    waves = [load_audio(f, 16000) for f in files]
    texts = recognizer.module.transcribe(waves)[0]
    results = recognizer.transcribe_batch(waves)
    assert [r.text for r in results] == texts
    for wave, result in zip(waves, results):
        times = [(t.start, t.end) for t in result.tokens]
        assert all(0 <= s <= e <= len(wave) / 16000 + 1e-6 for s, e in times)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(times, times[1:])), "greedy spikes do not overlap"
        assert "".join(t.token for t in result.tokens) == result.text.replace(" ", "")


def test_decode_log_probs_offsets_and_frame_seconds(recognizer, speech):
    assert recognizer.frame_seconds == pytest.approx(0.04)  # 10 ms hop, 4x time subsampling (deepspeech2_small)
    assert recognizer.sample_rate == 16000 and recognizer.streaming is False
    log_probs = recognizer.log_probs([load_audio(speech, 16000)])[0]
    at_zero, shifted = recognizer.decode_log_probs(log_probs), recognizer.decode_log_probs(log_probs, offset=12.5)
    assert shifted.text == at_zero.text and shifted.start == 12.5
    assert shifted.end == pytest.approx(12.5 + len(log_probs) * 0.04)
    assert [t.start - 12.5 for t in shifted.tokens] == pytest.approx([t.start for t in at_zero.tokens])


def test_threads_share_one_recognizer(recognizer, tiny):
    files = sorted((tiny["root"] / "wav").glob("*.wav"))[:6]
    expected = {f: recognizer.transcribe(f).text for f in files}
    got, errors = {}, []

    def work(f):
        try:
            got[f] = recognizer.transcribe(f).text
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected


def test_silence_is_an_empty_result(recognizer):
    for silence in (np.zeros(16000, dtype=np.float32), np.zeros(16000 * 30, dtype=np.float32)):
        result = recognizer.transcribe(silence)
        assert result.text == "" and result.segments == [] and result.duration == len(silence) / 16000
    assert recognizer.transcribe_batch([torch.zeros(8000)])[0].text == ""


def test_bad_input_is_one_line(recognizer, speech, tmp_path):
    variants = write_audio_variants(speech, tmp_path / "variants")
    for name in UNREADABLE_VARIANTS:
        for audio in (variants[name], variants[name].read_bytes()):
            with pytest.raises(LitAsrError) as err:
                recognizer.transcribe(audio)
            assert "\n" not in str(err.value)
    cases = [(tmp_path / "missing.wav", "audio not found"), (b"", "empty"), (b"GIF89a not audio" * 50, "cannot read"),
             (np.array(["a", "b"]), "must hold numbers"), (np.zeros((2, 3, 4), np.float32), "shape"),
             (12, "must be a path"), (np.array([0.1, np.nan] * 800, np.float32), "non-finite")]
    for audio, message in cases:
        with pytest.raises(LitAsrError, match=message) as err:
            recognizer.transcribe(audio)
        assert "\n" not in str(err.value)


def test_stream_refuses_a_bidirectional_model(recognizer):
    with pytest.raises(LitAsrError, match="model=deepspeech2_streaming"):
        recognizer.stream()


def test_device_setting():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LitAsrError, match="device=tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LitAsrError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_beam_search_gives_text_and_times(tiny, speech):
    decoder = {"_target_": "lit_asr.decoding.beam_search.BeamSearchDecoder", "lang_model_path": str(tiny["lm"]),
               "alpha": 1.0, "beta": 1.0, "beam_size": 8, "cutoff_prob": 1.0, "cutoff_top_n": 40,
               "num_proc_bsearch": 1}
    with Recognizer.from_checkpoint(tiny["checkpoint"] / "model.ckpt", decoder=decoder, device="cpu") as rec:
        log_probs = rec.log_probs([load_audio(speech, 16000)])[0]
        segment = rec.decode_log_probs(log_probs, offset=1.0)
        assert segment.text == rec.decoder.decode_batch([log_probs])[0] and segment.text
        assert "".join(t.token for t in segment.tokens) == segment.text.replace(" ", "")
        starts = [t.start for t in segment.tokens]
        assert starts == sorted(starts) and all(1.0 <= t.start <= t.end <= segment.end for t in segment.tokens)
