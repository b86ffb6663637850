"""Odd and broken audio files: prepare_data checks and reports them; at training load time they are read or skipped.

Every file is made from real espeak-ng speech (tiny_data.write_audio_variants): stereo, 8 kHz, 44.1 kHz, FLAC,
Ogg Vorbis, clipped, float beyond +-1, cut mid-data; and random bytes, a cut header, zero bytes, no samples,
NaN samples.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_asr.data.audio import load_audio
from lit_asr.data.augment import NoisePerturb
from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.data.manifest import ManifestEntry
from lit_asr.data.vocabulary import Vocabulary
from tiny_data import READABLE_VARIANTS, UNREADABLE_VARIANTS, write_audio_variants

from .common import ROOT, manifest_items, run_cli, write_jsonl


@pytest.fixture(scope="module")
def variants(tiny, tmp_path_factory) -> tuple[dict[str, Path], dict]:
    """(name -> odd file, the tiny train item they were made from)."""
    source = manifest_items(tiny["train_manifest"])[0]
    return write_audio_variants(Path(source["audio_filepath"]), tmp_path_factory.mktemp("variants")), source


def _skipped(out: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in (out / "skipped.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return {Path(row[0]).stem: row[1] for row in rows}


def test_prepare_data_checks_every_odd_file(tiny, variants, tmp_path):
    files, source = variants
    good = manifest_items(tiny["train_manifest"])
    train = [f"{g['audio_filepath']}\t{g['text']}" for g in good[1:4]]
    train += [f"{path}\t{source['text']}" for path in files.values()]
    (tmp_path / "train.tsv").write_text("\n".join(train) + "\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text(f"{good[5]['audio_filepath']}\t{good[5]['text']}\n", encoding="utf-8")
    proc = run_cli([ROOT / "scripts" / "prepare_data.py", "list", "--train-list", "train.tsv", "--test-list",
                    "test.tsv", "--out", "ds", "--jobs", "1", "--num-samples", "100"], cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    out = tmp_path / "ds"

    skipped = _skipped(out)
    assert skipped == {"corrupt": "unreadable audio", "truncated_header": "unreadable audio",
                       "zero_bytes": "unreadable audio", "empty": "empty audio"}
    assert "  unreadable audio        3        0" in proc.stdout
    assert "  note: 1 kept utterance(s) multi-channel, mixed down on load" in proc.stdout
    assert "  note: 1 kept utterance(s) at 8000 Hz, resampled to 16000 Hz on load" in proc.stdout
    assert "  note: 1 kept utterance(s) at 44100 Hz, resampled to 16000 Hz on load" in proc.stdout
    kept = {Path(e["audio_filepath"]).stem: e for e in manifest_items(out / "manifest.train")}
    # NaN samples hide behind a good header: kept here, left out of mean/std, skipped when training loads them
    assert set(kept) >= set(files) - set(skipped) and "nan_float" in kept
    assert f"warning: left out of mean/std: audio {files['nan_float']} holds non-finite samples (NaN or inf)" \
        in proc.stdout
    for name in ("stereo", "rate8k", "rate44k", "flac", "clipped", "hot_float"):
        assert kept[name]["duration"] == pytest.approx(source["duration"], abs=1e-3), name
    assert kept["truncated_data"]["duration"] == pytest.approx(source["duration"] / 2, rel=0.01)
    with np.load(out / "mean_std.npz") as stats:
        assert np.isfinite(stats["mean"]).all() and np.isfinite(stats["std"]).all()


def test_training_load_reads_odd_files_and_skips_broken_ones(tiny, variants, caplog):
    """Files that changed after prepare_data: the epoch goes on without them, each named once per load."""
    files, source = variants
    vocab = Vocabulary.load(tiny["dataset_vocab"])
    featurizer = FeatureExtractor()
    with np.load(tiny["mean_std_path"]) as stats:
        normalizer = Normalizer(torch.from_numpy(stats["mean"]), torch.from_numpy(stats["std"]))
    entries = [ManifestEntry(str(path), source["duration"], source["text"]) for path in files.values()]
    dataset = AsrDataset(entries, vocab, featurizer, normalizer)
    with caplog.at_level(logging.WARNING):
        items = {Path(e.audio_filepath).stem: dataset[i] for i, e in enumerate(entries)}

    original = featurizer.num_frames(int(source["duration"] * 16000))
    for name in READABLE_VARIANTS:
        if name not in files:
            continue  # no Vorbis in this libsndfile
        feats = items[name]["feats"]
        assert torch.isfinite(feats).all(), name
        expected = original // 2 if name == "truncated_data" else original
        assert abs(feats.shape[0] - expected) <= 2, (name, feats.shape)
    assert {name for name, item in items.items() if item is None} == set(UNREADABLE_VARIANTS)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(UNREADABLE_VARIANTS)
    advice = " (replace the file or remove it from the manifest)"
    assert f"skipping utterance: cannot read audio {files['corrupt']}: Format not recognised.{advice}" in warnings
    assert f"skipping utterance: audio {files['empty']} holds no samples{advice}" in warnings
    assert f"skipping utterance: audio {files['nan_float']} holds non-finite samples (NaN or inf){advice}" \
        in warnings
    assert all("\n" not in w for w in warnings)

    batch = collate(list(items.values()))
    assert len(batch["texts"]) == len([n for n in READABLE_VARIANTS if n in files])
    assert torch.isfinite(batch["feats"]).all()
    assert Counter(Path(a).stem for a in batch["audio"]) == Counter(n for n in READABLE_VARIANTS if n in files)


def test_a_broken_noise_clip_falls_back_to_synthetic_noise(variants, tmp_path, caplog):
    """Noise augmentation reads clips from noise_manifest during the epoch; one broken clip must not end it."""
    files, source = variants
    manifest = write_jsonl(tmp_path / "noise.jsonl", [{"audio_filepath": str(files["corrupt"]), "duration": 2.0,
                                                       "text": "noise"}])
    wave = load_audio(source["audio_filepath"], 16000)
    with caplog.at_level(logging.WARNING):
        noisy = NoisePerturb(prob=1.0, min_snr_db=10, max_snr_db=10, noise_manifest=str(manifest)).apply(wave, 16000)
    assert noisy.shape == wave.shape and torch.isfinite(noisy).all() and not torch.equal(noisy, wave)
    assert f"noise clip skipped: cannot read audio {files['corrupt']}: Format not recognised." in caplog.text
