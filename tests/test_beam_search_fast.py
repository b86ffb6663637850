"""Decoding speed options: blank-frame skipping, pruning keys, and the C++ decoder against pyctcdecode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lit_asr.decoding.beam_search import BeamSearchDecoder, skip_blank_frames
from lit_asr.decoding.lm import build_arpa, tokenize_for_lm
from lit_asr.errors import LitAsrError
from test_beam_search import ENGLISH, MANDARIN, frames, spell

pytest.importorskip("kenlm")
pytest.importorskip("flashlight.lib.text.decoder")
from lit_asr.decoding.beam_search_fast import FastBeamSearchDecoder  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "decoder"
ARGS = dict(alpha=1.0, beta=0.0, beam_size=30, cutoff_prob=1.0, cutoff_top_n=40, num_proc_bsearch=1)


@pytest.fixture(scope="module")
def ming_lm(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lm") / "ming.arpa"
    build_arpa([tokenize_for_lm(s) for s in ["今晚的明月很亮", "明月很亮", "明天", "今晚明月", "明月"]], 3, path)
    return str(path)


def both(lm: str | None, **kw) -> tuple[BeamSearchDecoder, FastBeamSearchDecoder]:
    args = {**ARGS, **kw}
    return BeamSearchDecoder(MANDARIN.labels(), lm, **args), FastBeamSearchDecoder(MANDARIN.labels(), lm, **args)


def test_skip_blank_frames_keeps_one_frame_per_sure_blank_run():
    x = frames(MANDARIN, {"": 0.9999}, {"": 0.9999}, {"明": 0.9}, {"": 0.9999}, {"": 0.9999}, {"": 0.9999},
               {"明": 0.9}, {"": 0.5, "月": 0.5}, {"": 0.9999})
    kept, index = skip_blank_frames(x, 0.99)
    assert index.tolist() == [0, 2, 3, 6, 7, 8]  # "明, blank, 明" still reads as two 明
    assert np.array_equal(kept, x[index])
    assert skip_blank_frames(x, None)[1].tolist() == list(range(len(x)))


def test_blank_skipping_changes_no_transcript(ming_lm):
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(6):
        text = "".join(rng.choice(list("明名月天亮今晚的很"), size=rng.integers(1, 8)))
        columns = []
        for ch in text:
            columns += [{ch: 0.7, "名": 0.2}] + [{"": 0.9995}] * int(rng.integers(1, 6))
        batch.append(frames(MANDARIN, *columns))
    assert sum(len(skip_blank_frames(x, 0.99)[0]) for x in batch) < sum(len(x) for x in batch) * 0.7
    for cls in (BeamSearchDecoder, FastBeamSearchDecoder):
        every = cls(MANDARIN.labels(), ming_lm, **ARGS).decode_batch(batch)
        assert cls(MANDARIN.labels(), ming_lm, blank_skip_prob=0.99, **ARGS).decode_batch(batch) == every


@pytest.mark.parametrize("lm_name", [None, "ming"])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.5, 2.0), (2.0, -1.0)])
def test_fast_decoder_agrees_with_pyctcdecode(ming_lm, lm_name, alpha, beta):
    # Ambiguous characters and a weak extra character whose fate depends on the insertion bonus beta.
    lm = ming_lm if lm_name else None
    inputs = [spell(MANDARIN, "今晚X月", {2: {"明": 0.44, "名": 0.46}}),
              spell(MANDARIN, "X月很亮", {0: {"明": 0.5, "名": 0.4}}),
              spell(MANDARIN, "明月X", {2: {"很": 0.3, "": 0.6}}),
              spell(MANDARIN, "今X的明天", {1: {"晚": 0.35, "": 0.55}})]
    slow, fast = both(lm, alpha=alpha, beta=beta)
    assert fast.decode_batch(inputs) == slow.decode_batch(inputs)


def test_fast_decoder_lm_and_bonus_take_effect(ming_lm):
    x = spell(MANDARIN, "X月", {0: {"明": 0.4, "名": 0.5}})
    assert FastBeamSearchDecoder(MANDARIN.labels(), None, **ARGS).decode_batch([x]) == ["名月"]
    assert FastBeamSearchDecoder(MANDARIN.labels(), ming_lm, **ARGS).decode_batch([x]) == ["明月"]
    weak = spell(MANDARIN, "明月X", {2: {"很": 0.3, "": 0.6}})
    low, high = (FastBeamSearchDecoder(MANDARIN.labels(), ming_lm, **{**ARGS, "beta": b}).decode_batch([weak])[0]
                 for b in (-2.0, 6.0))
    assert (low, high) == ("明月", "明月很")


def test_fast_decoder_frames_survive_blank_skipping():
    x = frames(MANDARIN, *([{"": 0.9999}] * 3 + [{"今": 0.9}] + [{"": 0.9999}] * 4 + [{"晚": 0.9}, {"晚": 0.9}]
                           + [{"": 0.9999}] * 2 + [{"<unk>": 0.9}, {"": 0.9999}, {"月": 0.9}]))
    plain = FastBeamSearchDecoder(MANDARIN.labels(), None, **ARGS).decode_frames(x)
    skipping = FastBeamSearchDecoder(MANDARIN.labels(), None, blank_skip_prob=0.99, **ARGS).decode_frames(x)
    assert plain == skipping == ("今晚月", [3, 8, 14])


def test_parallel_fast_decoding_matches_sequential(ming_lm):
    rng = np.random.default_rng(1)
    batch = [np.log(rng.dirichlet(np.full(len(MANDARIN), 0.3), size=n)) for n in (5, 40, 0, 17)]
    sequential = FastBeamSearchDecoder(MANDARIN.labels(), ming_lm, **ARGS).decode_batch(batch)
    with FastBeamSearchDecoder(MANDARIN.labels(), ming_lm, **{**ARGS, "num_proc_bsearch": 2}) as parallel:
        assert parallel.decode_batch(batch) == sequential
    assert sequential[2] == ""


def test_errors_and_config(tmp_path):
    with pytest.raises(LitAsrError, match="character"):
        FastBeamSearchDecoder(ENGLISH.labels(), None, **ARGS)
    with pytest.raises(LitAsrError, match="language model not found"):
        FastBeamSearchDecoder(MANDARIN.labels(), str(tmp_path / "missing.arpa"), **ARGS)
    for cls in (BeamSearchDecoder, FastBeamSearchDecoder):
        with pytest.raises(LitAsrError, match="beam_prune_logp"):
            cls(MANDARIN.labels(), None, beam_prune_logp=1.0, **ARGS)
        with pytest.raises(LitAsrError, match="blank_skip_prob"):
            cls(MANDARIN.labels(), None, blank_skip_prob=1.5, **ARGS)
    with pytest.raises(LitAsrError, match="has no hotwords: use decoder=beam_search"):
        FastBeamSearchDecoder(MANDARIN.labels(), None, hotwords=["明月"], **ARGS)
    # The fast decoder takes every key of decoder=beam_search, with the same meaning.
    slow, fast = (OmegaConf.load(CONF / name) for name in ("beam_search.yaml", "beam_search_fast.yaml"))
    assert set(slow) == set(fast)
