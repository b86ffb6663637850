"""Bad manifest lines are skipped, counted by reason and named by file:line; the good ones are used.

Through read_manifest and the data module (the path run.py's training and evaluation take); the end-to-end
run.py version is test_messy_training.py.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lit_asr.data.datamodule import AsrDataModule
from lit_asr.data.manifest import read_manifest
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError

from .common import build_parts, compose_config, manifest_items, write_jsonl


def messy_manifest(tiny: dict, folder: Path) -> tuple[Path, dict]:
    """A manifest with one line of every kind of problem, next to a copied wav referenced by a relative path.

    Returns its path and the expected {reason: count} of skipped lines.
    """
    good = manifest_items(tiny["train_manifest"])
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    shutil.copy(good[1]["audio_filepath"], folder / "wav" / "relative.wav")
    lines = [
        good[0],                                                                      # 1 kept
        {**good[1], "audio_filepath": "wav/relative.wav"},                            # 2 kept, resolved
        '{"audio_filepath": "a.wav", "duration": 1.0,',                                # 3 malformed JSON
        "[1, 2, 3]",                                                                  # 4 not an object
        {"audio_filepath": good[2]["audio_filepath"], "text": good[2]["text"]},       # 5 no duration
        {"audio_filepath": good[2]["audio_filepath"]},                                # 6 no duration, text
        {**good[2], "duration": "long"},                                              # 7 bad duration
        '{"audio_filepath": "%s", "duration": NaN, "text": "x"}' % good[2]["audio_filepath"],  # 8 NaN
        {**good[2], "audio_filepath": str(folder / "missing.wav")},                   # 9 missing audio
        good[0],                                                                      # 10 duplicate of 1
        {**good[3], "text": "。！ "},                                                  # 11 empty once normalised
        {**good[3], "text": None},                                                    # 12 null text
        {**good[4], "text": "　".join(good[4]["text"]) + "！"},                        # 13 kept, normalised
        {**good[5], "duration": 31.0},                                                # 14 too long
        "",                                                                           # 15 blank: ignored
    ]
    path = write_jsonl(folder / "manifest.messy", lines)
    with open(path, "ab") as f:
        f.write(b'\xff\xfe{"not": "utf-8"\n')                                         # 16 undecodable
    expected = {"malformed JSON": 2, "not UTF-8 text": 1, "missing key duration": 1,
                "missing key duration/text": 1,
                "duration not a positive number": 2, "audio file missing": 1, "duplicate entry": 1,
                "empty transcript": 2, "longer than max_duration=20.0s": 1}
    return path, expected


def test_every_bad_line_is_skipped_counted_and_named(tiny, tmp_path, monkeypatch, caplog):
    folder = tmp_path / "data"
    path, expected = messy_manifest(tiny, folder)
    monkeypatch.chdir(tmp_path)  # relative audio paths must not depend on where run.py is started
    good = manifest_items(tiny["train_manifest"])
    with caplog.at_level(logging.WARNING):
        entries, report = read_manifest(path, min_duration=0.5, max_duration=20.0)
    assert dict(report.skipped) == expected
    assert report.kept == 3 and [e.audio_filepath for e in entries] == [
        good[0]["audio_filepath"], str((folder / "wav" / "relative.wav").resolve()), good[4]["audio_filepath"]]
    assert entries[2].text == good[4]["text"]  # full-width spaces and "！" normalised away
    assert report.examples["malformed JSON"] == f"{path}:3"
    assert report.examples["audio file missing"] == f"{path}:9 {folder / 'missing.wav'}"
    assert report.examples["duplicate entry"] == f"{path}:10"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"{path}: kept 3, skipped ") and f"(e.g. {path}:3)" in warnings[0]
    assert warnings[0].endswith("skipped lines are not used: fix them (or re-run scripts/prepare_data.py) to "
                                "include them")


def test_a_manifest_with_nothing_usable_is_a_one_line_error(tmp_path):
    path = write_jsonl(tmp_path / "manifest.bad", ["not json", {"audio_filepath": "x.wav", "duration": 1,
                                                                "text": "x"}])
    with pytest.raises(LitAsrError) as err:
        read_manifest(path)
    assert str(err.value) == (f"{path}: no usable utterances (kept 0, skipped 1 malformed JSON (e.g. {path}:1); "
                              f"1 audio file missing (e.g. {path}:2 {tmp_path / 'x.wav'}))")


def _datamodule(tiny: dict, tmp: Path, **paths) -> AsrDataModule:
    """run.py's data module for the tiny data with ``paths`` replaced."""
    return build_parts(compose_config({**tiny, **paths}, tmp))[1]


def test_ctc_infeasible_and_unknown_characters_are_counted(tiny, tmp_path, caplog):
    good = manifest_items(tiny["train_manifest"])
    vocab = Vocabulary.load(tiny["dataset_vocab"])
    long_text = "".join(t for t in vocab.tokens[2:] if t != "<space>")[:90]  # 90 characters in ~2 s of audio
    train = write_jsonl(tmp_path / "manifest.train", good + [
        {**good[0], "text": long_text},                 # 4x subsampling leaves ~50 frames: infeasible
        {**good[1], "text": good[1]["text"] + "龍"},    # one character the vocabulary lacks
    ])
    dm = _datamodule(tiny, tmp_path, train_manifest=train)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert len(dm.train_set) == len(good) + 1  # the out-of-vocabulary one is kept, mapped to <unk>
    assert long_text not in [e.text for e in dm.train_set.entries]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert ("train: 1 utterances have characters outside the vocabulary, mapped to <unk> (1 distinct, e.g. '龍')"
            in warnings)
    assert (f"train: skipped 1 utterances too short for their transcript (CTC needs at least one output frame per "
            f"character), e.g. {good[0]['audio_filepath']}: 90 characters in {good[0]['duration']:.2f} s" in warnings)
    item = dm.train_set[len(good)]
    assert item["tokens"][-1] == Vocabulary.unk_id


def test_nothing_left_after_the_filters_is_a_one_line_error(tiny, tmp_path):
    good = manifest_items(tiny["train_manifest"])[:2]
    train = write_jsonl(tmp_path / "manifest.train", [{**g, "text": "明" * 200} for g in good])
    dm = _datamodule(tiny, tmp_path, train_manifest=train)
    with pytest.raises(LitAsrError, match=rf"^train: no utterances left in {train} after the checks above$"):
        dm.setup("fit")


def test_batches_are_bounded_by_audio_duration(tiny, tmp_path):
    """max_batch_duration bounds the padded audio of every batch; utterances over max_duration never load."""
    good = manifest_items(tiny["train_manifest"])
    wave, sr = soundfile.read(good[0]["audio_filepath"])
    soundfile.write(tmp_path / "long.wav", np.tile(wave, int(25 * sr / len(wave)) + 1), sr)  # a real 25+ s file
    long = {"audio_filepath": str(tmp_path / "long.wav"), "text": "白日", "duration": 25.0}
    train = write_jsonl(tmp_path / "manifest.train", good + [long])
    dm = _datamodule(tiny, tmp_path, train_manifest=train)
    dm.batch_size, dm.max_batch_duration = 32, 6.0
    dm.setup("fit")
    assert len(dm.train_set) == len(good)  # the 25 s one was over max_duration=20
    durations = [e.duration for e in dm.train_set.entries]
    batches = list(dm.train_dataloader().batch_sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(good)))
    assert all(max(durations[i] for i in b) * len(b) <= 6.0 for b in batches)
    assert 1 < max(len(b) for b in batches) <= 3  # ~2 s utterances: at most three fit in 6 s, not 32
