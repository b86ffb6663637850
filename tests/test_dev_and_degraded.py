"""Validation reads the dev split (test when there is none, with a warning); the degraded test set builder."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from lit_asr.data.augment import BandLimitPerturb, VolumePerturb, WaveAugmentor
from lit_asr.data.datamodule import AsrDataModule
from lit_asr.data.degraded import degrade, load_channel
from lit_asr.data.features import FeatureExtractor, save_mean_std
from lit_asr.data.manifest import read_manifest
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.models.asr_module import AsrModule

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _split(folder: Path, name: str, texts: list[str], write_wav) -> Path:
    lines = []
    for i, text in enumerate(texts):
        wav = write_wav(folder / name / f"{i}.wav", 1.0, freq=200.0 + 50 * i)
        lines.append(json.dumps({"audio_filepath": str(wav), "duration": 1.0, "text": text}, ensure_ascii=False))
    path = folder / f"manifest.{name}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def dataset(tmp_path, write_wav):
    splits = {"train": ["床前明月光", "疑是地上霜", "举头望明月"], "dev": ["低头思故乡"],
              "test": ["春眠不觉晓", "处处闻啼鸟"]}
    paths = {name: _split(tmp_path, name, texts, write_wav) for name, texts in splits.items()}
    vocab = Vocabulary.build(t for texts in splits.values() for t in texts)
    extractor = FeatureExtractor()
    save_mean_std(tmp_path / "mean_std.npz", np.zeros(extractor.dim), np.ones(extractor.dim), extractor.config, 1)
    return paths, vocab, extractor, tmp_path / "mean_std.npz"


def _datamodule(dataset, num_workers: int = 0, **kwargs) -> AsrDataModule:
    paths, vocab, extractor, _ = dataset
    model = {"_target_": "lit_asr.models.components.deepspeech2.DeepSpeech2", "conv_channels": [4, 4],
             "conv_kernels": [[5, 11], [5, 11]], "conv_strides": [[2, 2], [2, 2]], "num_rnn_layers": 1,
             "rnn_size": 8, "rnn_type": "gru", "bidirectional": True}
    module = AsrModule(model=model, vocabulary=vocab.tokens, feature_config=extractor.config,
                       mean=[0.0] * extractor.dim, std=[1.0] * extractor.dim,
                       optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3})
    dm = AsrDataModule(str(paths["train"]), str(paths["test"]), model=module, num_workers=num_workers,
                       wave_augment=WaveAugmentor([VolumePerturb(1.0)]), **kwargs)
    dm.setup("fit")
    return dm


def test_validation_reads_dev_without_augmentation(dataset):
    dm = _datamodule(dataset)  # dev_manifest=None: manifest.dev beside test_manifest
    assert [e.text for e in dm.val_set.entries] == ["低头思故乡"]
    assert dm.val_set.wave_augment is None and dm.val_set.spec_augment is None
    assert dm.train_set.wave_augment is not None  # augmentation is for training batches only
    assert [e.text for e in dm.test_set.entries] == ["春眠不觉晓", "处处闻啼鸟"]
    batch = next(iter(dm.val_dataloader()))
    assert batch["texts"] == ["低头思故乡"]
    explicit = _datamodule(dataset, dev_manifest=str(dataset[0]["dev"]))
    assert [e.text for e in explicit.val_set.entries] == ["低头思故乡"]


def test_validation_workers_are_forked_when_its_loader_is_made(dataset):
    """Not at the first validation, after an epoch has grown the trainer's heap: a worker forked then copies
    hundreds of MB of it (docs/benchmarks.md, 1c)."""
    dm = _datamodule(dataset, num_workers=1)
    before = set(multiprocessing.active_children())
    loader = dm.val_dataloader()
    workers = set(multiprocessing.active_children()) - before
    try:
        assert len(workers) == 1
        assert next(iter(loader))["texts"] == ["低头思故乡"]  # the first validation reuses that worker
        assert set(multiprocessing.active_children()) - before == workers
    finally:
        dm.close_workers()
    assert not set(multiprocessing.active_children()) - before


def test_without_a_dev_manifest_validation_falls_back_to_test_with_a_warning(dataset, caplog):
    dataset[0]["dev"].unlink()  # a dataset folder prepared before dev splits
    with caplog.at_level(logging.WARNING):
        dm = _datamodule(dataset)
    assert dm.val_set is dm.test_set
    warnings = [r.getMessage() for r in caplog.records if "dev manifest" in r.getMessage()]
    assert len(warnings) == 1 and "validating on test_manifest" in warnings[0] and "\n" not in warnings[0]


def _speechlike(path: Path, seconds: float, seed: int) -> Path:
    wave = torch.randn(int(SR * seconds), generator=torch.Generator().manual_seed(seed)) * 0.1
    soundfile.write(str(path), wave.numpy(), SR, subtype="PCM_16")
    return path


def test_degraded_copy_is_band_limited_reproducible_and_keeps_texts(tmp_path):
    from lit_asr.data.manifest import ManifestEntry

    entries = [ManifestEntry(str(_speechlike(tmp_path / f"{i}.wav", 1.0 + 0.5 * i, i)), 1.0 + 0.5 * i, f"第{i}句")
               for i in range(3)]
    channel = load_channel(ROOT / "conf" / "augment" / "degraded_test.yaml")
    assert [type(p).__name__ for p in channel.perturbations] == ["ReverbPerturb", "NoisePerturb", "BandLimitPerturb"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = degrade(entries, channel, tmp_path / "a", seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    again = degrade(entries, channel, tmp_path / "b", seed=5)
    other = degrade(entries, channel, tmp_path / "c", seed=6)
    assert [e.text for e in first] == [e.text for e in entries]
    assert [e.duration for e in first] == pytest.approx([e.duration for e in entries])
    for a, b, c, src in zip(first, again, other, entries):
        wave_a, wave_b = soundfile.read(a.audio_filepath)[0], soundfile.read(b.audio_filepath)[0]
        assert np.array_equal(wave_a, wave_b) and not np.array_equal(wave_a, soundfile.read(c.audio_filepath)[0])
        assert not np.allclose(wave_a, soundfile.read(src.audio_filepath)[0], atol=1e-3)
        spectrum = np.abs(np.fft.rfft(wave_a)) ** 2
        freqs = np.fft.rfftfreq(len(wave_a), 1 / SR)
        # telephone band: only 16-bit rounding above 3.4 kHz and below 300 Hz
        assert spectrum[(freqs > 3500) | (freqs < 250)].sum() < 1e-3 * spectrum.sum()


def test_degraded_manifest_reads_back(tmp_path):
    from lit_asr.data.manifest import ManifestEntry, write_manifest

    entries = [ManifestEntry(str(_speechlike(tmp_path / "0.wav", 1.0, 0)), 1.0, "你好")]
    out = degrade(entries, WaveAugmentor([BandLimitPerturb(1.0)]), tmp_path / "deg", seed=0)
    write_manifest(tmp_path / "manifest.test_degraded", out)
    read, _ = read_manifest(tmp_path / "manifest.test_degraded")
    assert read == out and Path(read[0].audio_filepath).parent == tmp_path / "deg"


def test_a_dev_manifest_that_was_set_must_exist(dataset, tmp_path):
    from hydra import compose, initialize_config_dir

    from lit_asr.errors import LitAsrError
    from lit_asr.utils.config_check import check_config

    paths, _, _, mean_std = dataset
    vocab = tmp_path / "vocabulary.txt"
    dataset[1].save(vocab)
    base = [f"train_manifest={paths['train']}", f"test_manifest={paths['test']}", f"dataset_vocab={vocab}",
            f"mean_std_path={mean_std}", f"save_model_path={tmp_path / 'models'}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        check_config(compose("config", overrides=base))  # dev_manifest=null: found beside test, or test
        check_config(compose("config", overrides=base + [f"dev_manifest={paths['dev']}"]))
        with pytest.raises(LitAsrError, match="dev_manifest="):
            check_config(compose("config", overrides=base + [f"dev_manifest={tmp_path / 'nowhere'}"]))
