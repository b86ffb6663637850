"""Transcripts: full-width/half-width punctuation and spaces come out the same in prepare_data, training and decoding.

Empty transcripts are skipped and counted everywhere; characters outside the vocabulary are mapped to <unk> and
counted (test_bad_manifest.py); the one normalisation is lit_asr.data.text.normalize_text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_asr.data.features import FeatureExtractor
from lit_asr.data.manifest import read_manifest
from lit_asr.data.prepare import Candidate, Policy, check_candidates
from lit_asr.data.text import normalize_text
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.beam_search import BeamSearchDecoder
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.models.asr_module import AsrModule

from .common import manifest_items, write_jsonl

# Each group: ways of writing one transcript that must all become the first entry's normal form.
SPELLINGS = [
    ("床前明月光", ["床前，明月光。", "床前, 明月光.", "床前　明月光", "床 前 明 月 光 ", "「床前」《明月光》！", "床前明月光\u200b"]),
    ("hello world", ["ＨＥＬＬＯ，Ｗｏｒｌｄ！", "Hello,   world!", "hello\u3000world", "«hello» — world…"]),
    ("用iphone12拍照", ["用ｉＰｈｏｎｅ１２拍照。", "用 iPhone12 拍照", "用iPhone12拍照"]),
    ("don't stop", ["DON'T stop!", "don't   stop"]),
]


@pytest.mark.parametrize("normal, spellings", SPELLINGS, ids=[n for n, _ in SPELLINGS])
def test_one_normal_form_everywhere(tiny, tmp_path, normal, spellings):
    wav = manifest_items(tiny["train_manifest"])[0]["audio_filepath"]
    # prepare_data
    checked = check_candidates({"train": [Candidate(wav, s) for s in spellings], "test": []}, Policy(), jobs=1)
    prepared = [e.text for e in checked.entries["train"]]
    assert prepared == [normal]  # the other spellings are the same utterance: skipped as duplicates
    assert {s.reason for s in checked.skipped} == {"duplicate"} and len(checked.skipped) == len(spellings) - 1
    # training (a hand-written manifest, not from prepare_data): one entry per spelling, each normalised
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": wav, "duration": 1.0, "text": s}
                                                  for s in spellings])
    entries, report = read_manifest(manifest)
    assert [e.text for e in entries] == [normal] and report.skipped["duplicate entry"] == len(spellings) - 1
    # normalising again changes nothing, so prepared manifests are read back exactly
    assert all(normalize_text(normalize_text(s)) == normalize_text(s) == normal for s in spellings)


def _path_through(labels: list[str], path: list[int]) -> np.ndarray:
    """Log-probs whose best path is ``path`` (one frame per id)."""
    lp = np.full((len(path), len(labels)), -20.0, dtype=np.float32)
    lp[np.arange(len(path)), path] = 0.0
    return lp


def test_decoders_normalise_like_the_references(tiny, tmp_path):
    """A model emitting "明 月  光" (spaces between CJK, doubled) is scored as "明月光" by every decoder."""
    vocab = Vocabulary(["<blank>", "<unk>", "明", "月", "光", "<space>", "a", "b"])
    space = vocab.tokens.index("<space>")
    cjk = _path_through(vocab.labels(), [2, space, 0, space, 3, space, 0, space, 4])
    latin = _path_through(vocab.labels(), [space, 6, space, 0, space, 7, space])
    wav = manifest_items(tiny["train_manifest"])[0]["audio_filepath"]
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": wav, "duration": 1.0, "text": t}
                                                  for t in ("明　月，光！", " A ,  B ")])
    reference = [e.text for e in read_manifest(manifest)[0]]  # what evaluation scores against
    assert reference == ["明月光", "a b"]

    greedy = GreedyDecoder(vocab.labels()).decode_batch([cjk, latin])
    beam = BeamSearchDecoder(vocab.labels(), None, 0.0, 0.0, beam_size=8, cutoff_prob=1.0, cutoff_top_n=8,
                             num_proc_bsearch=1).decode_batch([cjk, latin])
    module = AsrModule(
        model={"_target_": "lit_asr.models.components.deepspeech2.DeepSpeech2", "rnn_size": 8,
               "num_rnn_layers": 1, "conv_channels": [4, 4]},
        vocabulary=vocab.tokens, feature_config=FeatureExtractor().config, mean=[0.0] * 80, std=[1.0] * 80,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True})
    frames = max(len(cjk), len(latin))
    padded = torch.full((2, frames, len(vocab)), -20.0)
    padded[0, : len(cjk)], padded[1, : len(latin)] = torch.from_numpy(cjk), torch.from_numpy(latin)
    validation = module.decode(padded, torch.tensor([len(cjk), len(latin)]))
    assert greedy == beam == validation == reference


def test_empty_transcripts_are_skipped_and_counted(tiny, tmp_path):
    wav = manifest_items(tiny["train_manifest"])[0]["audio_filepath"]
    checked = check_candidates({"train": [Candidate(wav, "。。！"), Candidate(wav, "   "), Candidate(wav, "好")],
                                "test": []}, Policy(), jobs=1)
    assert [s.reason for s in checked.skipped] == ["empty transcript", "empty transcript"]
    assert checked.skipped[0].detail == "'。。！' after normalisation"
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": wav, "duration": 1.0, "text": t}
                                                  for t in ("。。！", "", "好")])
    entries, report = read_manifest(manifest)
    assert [e.text for e in entries] == ["好"] and report.skipped == {"empty transcript": 2}
