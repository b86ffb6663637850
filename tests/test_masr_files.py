"""MASR's files: its character vocabulary is read as it is; its sentencepiece vocabulary, mean_istd.json and
manifests get the command that turns them into a lit-asr dataset folder, which then works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lit_asr.data.features import load_mean_std
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError

ROOT = Path(__file__).resolve().parents[1]


def test_masr_character_vocabulary_is_read_as_it_is(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text("<blank>\t-1\n<unk>\t-1\n的\t120\n \t40\n了\t7\n", encoding="utf-8")
    vocab = Vocabulary.load(path)
    assert vocab.tokens == ["<blank>", "<unk>", "的", "<space>", "了"]
    assert vocab.decode(vocab.encode("的 了")) == "的 了"


def test_masr3_sentencepiece_vocabulary_is_refused_with_the_conversion_command(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text("<blank>\t0\n<unk>\t0\n<eos>\t0\n▁\t-2.1\n的\t-3.3\n", encoding="utf-8")
    with pytest.raises(LitAsrError) as err:
        Vocabulary.load(path)
    message = str(err.value)
    assert "MASR 3 sentencepiece vocabulary" in message and "prepare_data.py masr" in message
    assert "must start with" not in message and "\n" not in message


def test_vocabulary_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(LitAsrError, match="vocabulary file a folder"):
        Vocabulary.load(tmp_path)


def test_masr_mean_istd_json_is_refused_with_the_reason_and_the_command(tmp_path):
    path = tmp_path / "mean_istd.json"
    path.write_text(json.dumps({"mean": [1.0] * 80, "istd": [0.5] * 80, "feature_method": "fbank"}))
    with pytest.raises(LitAsrError) as err:
        load_mean_std(path)
    message = str(err.value)
    assert "MASR's mean_istd.json" in message and "fbank" in message and "prepare_data.py masr" in message
    other = tmp_path / "stats.json"
    other.write_text("[1, 2]")
    with pytest.raises(LitAsrError, match="not a lit-asr normalisation file"):
        load_mean_std(other)


def test_prepare_data_masr_rebuilds_a_dataset_from_masr_manifests(tmp_path, speak_wav):
    # MASR's layout: manifests in dataset/, audio paths relative to the folder MASR runs in.
    masr = tmp_path / "masr"
    rows = {"train": [("床前明月光", "a.wav"), ("疑是地上霜", "b.wav"), ("举头望明月", "c.wav")],
            "test": [("低头思故乡", "d.wav")]}
    for split, items in rows.items():
        lines = []
        for text, name in items:
            duration = soundfile.info(str(speak_wav(masr / "dataset" / "audio" / name, text))).duration
            lines.append(json.dumps({"audio_filepath": f"dataset/audio/{name}", "text": text,
                                     "duration": duration}, ensure_ascii=False))
        if split == "train":  # a segment of MASR's merged audio, and a broken line
            lines.append(json.dumps({"audio_filepath": "dataset/audio/a.wav", "text": "合并", "duration": 1.0,
                                     "start_time": 0.0, "end_time": 1.0}, ensure_ascii=False))
            lines.append("{not json")
        (masr / "dataset" / f"manifest.{split}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "masr", "--train-manifest",
                           "dataset/manifest.train", "--test-manifest", "dataset/manifest.test", "--out", str(out),
                           "--features", str(ROOT / "conf/features/fbank.yaml"), "--jobs", "1"],
                          cwd=masr, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train, dev = ([json.loads(line) for line in (out / f"manifest.{split}").read_text(encoding="utf-8").splitlines()]
                  for split in ("train", "dev"))
    assert dev, "MASR has no dev split: one is held out of its train manifest"
    assert sorted(e["text"] for e in train + dev) == ["举头望明月", "床前明月光", "疑是地上霜"]
    assert all(Path(e["audio_filepath"]).is_file() for e in train)
    skipped = (out / "skipped.tsv").read_text(encoding="utf-8")
    assert "segment of a merged file" in skipped and "malformed line" in skipped
    mean, std = load_mean_std(out / "mean_std.npz")
    assert mean.shape == (80,) and np.all(std > 0)
    assert "明" in Vocabulary.load(out / "vocabulary.txt")
