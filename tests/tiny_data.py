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


def write_audio_variants(speech: Path, folder: Path) -> dict[str, Path]:
    """Every kind of odd audio file, made from one real speech wav: name -> path.

    Readable: ``stereo``, ``rate8k``, ``rate44k``, ``flac``, ``ogg`` (when libsndfile has Vorbis), ``clipped``
    (int16 saturated), ``hot_float`` (float samples beyond +-1), ``truncated_data`` (cut mid-data: a shorter file).
    Unusable: ``corrupt`` (random bytes), ``truncated_header``, ``zero_bytes``, ``empty`` (valid header, no
    samples), ``nan_float`` (float samples with NaN: the header looks fine).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wave, sr = soundfile.read(str(speech), dtype="float32")
    resampled = {rate: AF.resample(torch.from_numpy(wave), sr, rate).numpy() for rate in (8000, 44100)}
    out = {name: folder / f"{name}.{ext}" for name, ext in [
        ("stereo", "wav"), ("rate8k", "wav"), ("rate44k", "wav"), ("flac", "flac"), ("ogg", "ogg"),
        ("clipped", "wav"), ("hot_float", "wav"), ("truncated_data", "wav"), ("corrupt", "wav"),
        ("truncated_header", "wav"), ("zero_bytes", "wav"), ("empty", "wav"), ("nan_float", "wav")]}
    soundfile.write(str(out["stereo"]), np.stack([wave, 0.5 * wave], axis=1), sr)
    soundfile.write(str(out["rate8k"]), resampled[8000], 8000)
    soundfile.write(str(out["rate44k"]), resampled[44100], 44100)
    soundfile.write(str(out["flac"]), wave, sr)
    if "OGG" in soundfile.available_formats():
        soundfile.write(str(out["ogg"]), wave, sr)
    else:
        del out["ogg"]
    soundfile.write(str(out["clipped"]), np.clip(20 * wave, -1, 1), sr, subtype="PCM_16")
    soundfile.write(str(out["hot_float"]), 4 * wave, sr, subtype="FLOAT")
    raw = Path(speech).read_bytes()
    out["truncated_data"].write_bytes(raw[: len(raw) // 2])
    out["corrupt"].write_bytes(np.random.default_rng(0).bytes(4000))
    out["truncated_header"].write_bytes(raw[:30])
    out["zero_bytes"].write_bytes(b"")
    soundfile.write(str(out["empty"]), np.zeros(0, dtype=np.float32), sr)
    poisoned = wave.copy()
    poisoned[len(poisoned) // 2: len(poisoned) // 2 + 100] = np.nan
    soundfile.write(str(out["nan_float"]), poisoned, sr, subtype="FLOAT")
    return out


READABLE_VARIANTS = ("stereo", "rate8k", "rate44k", "flac", "ogg", "clipped", "hot_float", "truncated_data")
UNREADABLE_VARIANTS = ("corrupt", "truncated_header", "zero_bytes", "empty", "nan_float")
