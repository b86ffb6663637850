"""Token times from CTC frames (greedy spikes, beam-search word frames) and hotwords, on log-probs with known frames."""

from __future__ import annotations

import numpy as np
import pytest

from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.beam_search import BeamSearchDecoder
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.decoding.timestamps import aligned_token_frames, frames_to_times, greedy_token_frames

pytest.importorskip("pyctcdecode")

VOCAB = Vocabulary(["<blank>", "<unk>", "花", "落", "知", "枝", "多", "少", "几", "春"])


def log_probs(*columns: dict[str, float]) -> np.ndarray:
    """One frame per column ('' is blank) with a little mass on every other label."""
    labels = VOCAB.labels()
    probs = np.full((len(columns), len(labels)), 1e-4)
    for t, column in enumerate(columns):
        for token, p in column.items():
            probs[t, labels.index(token)] = p
    return np.log(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


BLANK = {"": 0.95}
# 花 at frames 2-3, 落 at 6, <unk> at 8, 知 at 10-12; blanks elsewhere
KNOWN = log_probs(BLANK, BLANK, {"花": 0.9}, {"花": 0.9}, BLANK, BLANK, {"落": 0.9}, BLANK, {"<unk>": 0.9}, BLANK,
                  {"知": 0.9}, {"知": 0.9}, {"知": 0.9}, BLANK)

# 知 and 枝 are both zhī: the acoustics cannot tell them apart and lean slightly to 知
AMBIGUOUS = log_probs({"花": 0.9}, BLANK, {"落": 0.9}, BLANK, {"知": 0.48, "枝": 0.44}, BLANK, {"多": 0.9}, BLANK,
                      {"少": 0.9})


def beam(**kw) -> BeamSearchDecoder:
    args = dict(lang_model_path=None, alpha=1.0, beta=0.0, beam_size=20, cutoff_prob=1.0, cutoff_top_n=40,
                num_proc_bsearch=1)
    return BeamSearchDecoder(VOCAB.labels(), **{**args, **kw})


def test_greedy_spikes_are_the_argmax_runs():
    written = GreedyDecoder(VOCAB.labels()).labels  # blank and <unk> are never written out
    assert greedy_token_frames(KNOWN, written) == [("花", 2, 4), ("落", 6, 7), ("知", 10, 13)]
    times = frames_to_times(greedy_token_frames(KNOWN, written), frame_seconds=0.04, offset=1.0)
    assert [(t.token, t.start, t.end) for t in times] == [("花", 1.08, 1.16), ("落", 1.24, 1.28), ("知", 1.4, 1.52)]
    assert greedy_token_frames(KNOWN[:0], written) == []


def test_beam_search_text_is_aligned_to_its_frames():
    written = GreedyDecoder(VOCAB.labels()).labels
    text = beam().decode_batch([KNOWN])[0]
    assert text == "花落知"
    assert aligned_token_frames(KNOWN, text, written) == [("花", 2, 4), ("落", 6, 7), ("知", 10, 13)]
    # a text the argmax path does not spell (a hotword chose 枝): 枝 gets the frame where it competes with 知
    assert aligned_token_frames(AMBIGUOUS, "花落枝多少", written) == [
        ("花", 0, 1), ("落", 2, 3), ("枝", 4, 5), ("多", 6, 7), ("少", 8, 9)]
    assert aligned_token_frames(KNOWN[:2], "花落知", written) == []  # more characters than frames


def test_a_hotword_flips_a_homophone_and_leaves_clear_speech_alone():
    assert beam().decode_batch([AMBIGUOUS]) == ["花落知多少"]
    for hotwords in (["枝"], ["落枝"]):
        assert beam(hotwords=hotwords, hotword_weight=3.0).decode_batch([AMBIGUOUS]) == ["花落枝多少"]
        assert beam(hotwords=hotwords, hotword_weight=3.0).decode_batch([KNOWN]) == ["花落知"]
    assert beam(hotwords=["落枝"], hotword_weight=0.0).decode_batch([AMBIGUOUS]) == ["花落知多少"]
    assert beam(hotwords=["几枝"]).hotwords == ["几 枝"]  # Mandarin hotwords are matched character by character
