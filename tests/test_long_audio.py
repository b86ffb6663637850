"""Long audio: a 3-minute recording of tiny utterances with pauses is cut by silero-vad at the true boundaries,
and recognised as well as the utterances one by one. Real espeak-ng speech; see tests/long_audio.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from torchmetrics.functional.text import char_error_rate

from lit_asr.inference.audio_input import open_audio
from lit_asr.inference.recognizer import Recognizer
from long_audio import build_long_file
from tiny_checkpoint import tiny_checkpoint, trained_tiny_checkpoint

BOUNDARY_TOLERANCE = 0.3  # seconds between a true utterance start/end and the nearest segment boundary
CER_TOLERANCE = 0.02  # long-file CER may exceed the utterance-by-utterance CER by this much


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def long_file(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "three_minutes.wav"
    return path, build_long_file(tiny["train_manifest"], path, seconds=180.0)


@pytest.fixture(scope="module")
def vad_spans(tiny, long_file):
    with Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu") as recognizer:
        with open_audio(long_file[0], 16000) as audio:
            assert audio.duration >= 180.0
            return recognizer.segmenter.segments(audio, max_seconds=recognizer.max_duration)


def worst_boundary_error(placed: list[dict], spans: list[tuple[float, float]]) -> float:
    """The largest distance from a true utterance start or end to the nearest segment boundary."""
    bounds = np.array([t for span in spans for t in span])
    return max(float(np.abs(bounds - t).min()) for p in placed for t in (p["start"], p["end"]))


def cers(recognizer: Recognizer, path, placed: list[dict]) -> tuple[float, float, object]:
    """(long-file CER, utterance-by-utterance CER, long-file transcript) against the placed utterances."""
    result = recognizer.transcribe(path)
    references = [p["text"] for p in placed]
    wave = soundfile.read(str(path), dtype="float32")[0]
    pieces = [torch.from_numpy(wave[int(p["start"] * 16000):int(p["end"] * 16000)]) for p in placed]
    one_by_one = [recognizer.transcribe(piece).text for piece in pieces]
    return (float(char_error_rate(result.text, "".join(references))), float(char_error_rate(one_by_one, references)),
            result)


def test_vad_segments_meet_the_true_boundaries(long_file, vad_spans):
    placed = long_file[1]
    assert len(vad_spans) == len(placed)
    assert worst_boundary_error(placed, vad_spans) <= BOUNDARY_TOLERANCE
    assert all(e - s <= 20.0 for s, e in vad_spans)


def test_long_file_goes_segment_by_segment(tiny, long_file, vad_spans):
    """The barely trained tiny checkpoint emits near-noise, so its CER means nothing (the slow test below checks
    CER with a trained model); the result's shape does: VAD segments, in order, each token inside its segment."""
    path, placed = long_file
    with Recognizer.from_checkpoint(tiny["checkpoint"], device="cpu", batch_size=16) as recognizer:
        result = recognizer.transcribe(path)
    assert result.duration == pytest.approx(placed[-1]["end"] + 0.8, abs=0.01)
    assert result.segments and {(s.start, s.end) for s in result.segments} <= set(vad_spans)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.start <= t.start <= t.end <= s.end for s in result.segments
                                            for t in s.tokens)
    assert result.text == "".join(s.text for s in result.segments)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_trained_model_long_file_cer_boundaries_and_character_times(tiny, long_file, tmp_path_factory, decoder):
    """With a model trained on the tiny set (these are its training utterances): CER, boundaries, and every
    character timed inside its own utterance."""
    path, placed = long_file
    checkpoint = trained_tiny_checkpoint(tmp_path_factory)
    beam = {"_target_": "lit_asr.decoding.beam_search.BeamSearchDecoder", "lang_model_path": str(tiny["lm"]),
            "alpha": 0.5, "beta": 1.0, "beam_size": 20, "cutoff_prob": 0.99, "cutoff_top_n": 40,
            "num_proc_bsearch": 1}
    with Recognizer.from_checkpoint(checkpoint, decoder=beam if decoder == "beam" else None, device="cpu",
                                    batch_size=16) as recognizer:
        long_cer, utterance_cer, result = cers(recognizer, path, placed)
    print(f"{decoder}: long-file CER {long_cer:.4f}, utterance-by-utterance CER {utterance_cer:.4f}, "
          f"worst boundary error {worst_boundary_error(placed, [(s.start, s.end) for s in result.segments]):.3f} s")
    assert utterance_cer < 0.2, "the trained model should know its training utterances"
    assert long_cer <= utterance_cer + CER_TOLERANCE
    assert worst_boundary_error(placed, [(s.start, s.end) for s in result.segments]) <= BOUNDARY_TOLERANCE
    inside = [any(p["start"] - BOUNDARY_TOLERANCE <= t.start and t.end <= p["end"] + BOUNDARY_TOLERANCE
                  for p in placed) for t in result.tokens]
    assert all(inside), f"{inside.count(False)} of {len(inside)} characters timed outside every utterance"
