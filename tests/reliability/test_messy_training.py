"""One real run.py training on a manifest holding every kind of bad line and file, with two loader workers.

The run finishes; each problem is reported on the console (file:line for manifest lines, the path for audio that
fails in a loader worker) and the good utterances, odd formats included, are trained on.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from lit_asr.data.vocabulary import Vocabulary
from test_checkpoints import train
from tiny_data import READABLE_VARIANTS, UNREADABLE_VARIANTS, write_audio_variants

from .common import manifest_items, write_jsonl


def long_file(item: dict, path: Path) -> Path:
    """A real 25+ s file of ``item``'s speech repeated (a manifest's duration is checked against the audio)."""
    wave, sr = soundfile.read(item["audio_filepath"])
    soundfile.write(path, np.tile(wave, int(25 * sr / len(wave)) + 1), sr)
    return path


@pytest.fixture(scope="module")
def messy_run(tiny, tmp_path_factory):
    """(run folder, manifest folder, finished process, broken files) of one epoch on the messy data."""
    tmp = tmp_path_factory.mktemp("messy")
    data, run = tmp / "data", tmp / "run"
    run.mkdir()
    good = manifest_items(tiny["train_manifest"])
    files = write_audio_variants(Path(good[0]["audio_filepath"]), data / "odd")
    (data / "wav").mkdir()
    for i in (1, 2):
        shutil.copy(good[i]["audio_filepath"], data / "wav" / f"relative{i}.wav")
    vocab = Vocabulary.load(tiny["dataset_vocab"])
    lines = good + [
        {**good[1], "audio_filepath": "wav/relative1.wav"},                      # resolved from data/, not run/
        {**good[2], "audio_filepath": "wav/relative2.wav", "text": "，".join(good[2]["text"]) + "。"},
        '{"audio_filepath": "broken',                                            # malformed JSON
        {"audio_filepath": good[3]["audio_filepath"], "text": "缺时长"},           # missing key
        {**good[3], "audio_filepath": str(data / "gone.wav")},                   # missing audio file
        good[4],                                                                 # duplicate
        {**good[5], "text": "！？"},                                              # empty once normalised
        {**good[6], "text": good[6]["text"] + "龍"},                              # outside the vocabulary
        {**good[7], "text": "".join(t for t in vocab.tokens[2:] if t != "<space>")[:90]},  # CTC-infeasible
        {**good[8], "audio_filepath": str(long_file(good[8], data / "long.wav"))},  # over max_duration
    ] + [{**good[0], "audio_filepath": str(path)} for path in files.values()]
    train_manifest = write_jsonl(data / "manifest.train", lines)
    test_manifest = write_jsonl(data / "manifest.test", manifest_items(tiny["test_manifest"]) + [
        {**good[0], "audio_filepath": str(files["corrupt"])}])
    paths = {**tiny, "train_manifest": train_manifest, "test_manifest": test_manifest}
    proc = train(paths, run, num_epoch=1, num_workers=2, max_batch_duration=30.0)
    return run, data, proc, files, len(good)


def test_the_run_finishes_and_saves(messy_run):
    run, _, proc, _, _ = messy_run
    assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    last = torch.load(run / "models" / "deepspeech2" / "last_model" / "model.ckpt", weights_only=True)
    assert last["global_step"] > 0
    assert re.search(r"Test epoch: 1, .* cer: \d", proc.stdout)


def test_manifest_problems_are_counted_with_file_and_line(messy_run):
    _, data, proc, _, n = messy_run
    m = data / "manifest.train"
    summary = next(line for line in proc.stdout.splitlines() if f"{m}: kept" in line)
    assert f"skipped 1 malformed JSON (e.g. {m}:{n + 3})" in summary
    assert f"1 missing key duration (e.g. {m}:{n + 4})" in summary
    assert f"1 audio file missing (e.g. {m}:{n + 5} {data / 'gone.wav'})" in summary
    assert f"1 duplicate entry (e.g. {m}:{n + 6})" in summary
    assert f"1 empty transcript (e.g. {m}:{n + 7})" in summary
    assert f"1 longer than max_duration=20.0s (e.g. {m}:{n + 10})" in summary
    assert "train: 1 utterances have characters outside the vocabulary, mapped to <unk> (1 distinct, e.g. '龍')" \
        in proc.stdout
    assert re.search(r"train: skipped 1 utterances too short for their transcript \(CTC needs at least one output "
                     r"frame per character\), e\.g\. \S+: 90 characters in [\d.]+ s", proc.stdout)


def test_broken_audio_is_skipped_by_the_loader_workers_and_named(messy_run):
    _, _, proc, files, _ = messy_run
    skipped = re.findall(r"skipping utterance: (?:cannot read audio|audio) (\S+\.wav)", proc.stdout)
    assert {Path(p).stem for p in skipped} == set(UNREADABLE_VARIANTS)
    # every broken train file once per epoch, plus the broken test file once per validation pass
    assert skipped.count(str(files["corrupt"])) == 2 and skipped.count(str(files["empty"])) == 1
    readable = [str(files[name]) for name in READABLE_VARIANTS if name in files]
    assert not set(readable) & set(skipped)  # stereo, 8/44.1 kHz, FLAC, Ogg, clipped, ...: all trained on
