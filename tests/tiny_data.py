"""A tiny real-speech dataset for tests: espeak-ng Mandarin clauses, 16 kHz wavs, manifests, vocabulary, mean/std."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from lit_asr.data.features import FeatureExtractor, compute_mean_std, save_mean_std
from lit_asr.data.vocabulary import Vocabulary

# Short clauses built from a small character set, so a few epochs on CPU visibly learn something.
SENTENCES = [
    "白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼", "床前明月光", "疑是地上霜", "举头望明月",
    "低头思故乡", "春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少", "红豆生南国", "春来发几枝",
    "愿君多采撷", "此物最相思", "千山鸟飞绝", "万径人踪灭", "孤舟蓑笠翁", "独钓寒江雪", "明月照山河",
    "山中人不见", "江上风雨来", "故乡春花落", "日出江花红", "春风又绿江", "明月何时照", "千里江山图",
]


def synthesize(text: str, path: Path, speed: int = 160, pitch: int = 50, sample_rate: int = 16000) -> float:
    """Speak Mandarin ``text`` with espeak-ng into a 16 kHz wav; returns its duration in seconds."""
    wav = subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    data, sr = soundfile.read(io.BytesIO(wav), dtype="float32")
    data = AF.resample(torch.from_numpy(data), sr, sample_rate).numpy()
    soundfile.write(str(path), data, sample_rate)
    return len(data) / sample_rate


def make_tiny_dataset(root: Path, repeats: int = 2, test_every: int = 7) -> dict[str, Path]:
    """Write wavs and dataset files under ``root``; every ``test_every``-th sentence goes to the test split.

    Returns the paths as run.py's top-level keys (train_manifest, test_manifest, dataset_vocab, mean_std_path).
    """
    root = Path(root)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for i, text in enumerate(SENTENCES):
        voices = [(140 + 25 * r, 40 + 15 * r) for r in range(repeats)]
        for r, (speed, pitch) in enumerate(voices):
            path = root / "wav" / f"{i:03d}_{r}.wav"
            duration = synthesize(text, path, speed, pitch)
            item = {"audio_filepath": str(path), "duration": duration, "text": text}
            (test if i % test_every == 0 else train).append(item)
    paths = {"train_manifest": root / "manifest.train", "test_manifest": root / "manifest.test",
             "dataset_vocab": root / "vocabulary.txt", "mean_std_path": root / "mean_std.npz"}
    for items, key in ((train, "train_manifest"), (test, "test_manifest")):
        paths[key].write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
    Vocabulary.build(it["text"] for it in train + test).save(paths["dataset_vocab"])
    featurizer = FeatureExtractor()
    mean, std, count = compute_mean_std(
        featurizer(torch.from_numpy(soundfile.read(it["audio_filepath"], dtype="float32")[0])) for it in train)
    save_mean_std(paths["mean_std_path"], np.asarray(mean), np.asarray(std), featurizer.config, count)
    return paths


def overrides(paths: dict[str, Path], tmp: Path, **extra) -> list[str]:
    """Hydra overrides that point run.py at a tiny dataset and keep every output under ``tmp``."""
    args = {**{k: str(v) for k, v in paths.items()}, "model": "deepspeech2_small", "batch_size": 8,
            "num_workers": 0, "save_model_path": str(tmp / "models"), "log_dir": str(tmp / "log"),
            "hydra.run.dir": str(tmp / "outputs"), "trainer.enable_progress_bar": False,
            "trainer.enable_model_summary": False, **extra}
    return [f"{k}={v}" for k, v in args.items()]
