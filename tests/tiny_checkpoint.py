"""A barely trained checkpoint of the tiny dataset, plus a character LM, built once per pytest session."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir

from lit_asr.data.text import normalize_text
from lit_asr.decoding.lm import build_arpa, tokenize_for_lm
from lit_asr.tasks.train import build_parts
from long_audio import write_training_manifest
from tiny_data import make_tiny_dataset, overrides

ROOT = Path(__file__).resolve().parents[1]


def tiny_checkpoint(tmp_path_factory) -> dict[str, Path]:
    """Paths of the tiny dataset (run.py's keys) plus ``checkpoint`` (a folder), ``lm`` and ``root``.

    One optimiser step at a tiny learning rate: the outputs stay spread over many characters, which is what the
    decoding, cache and export tests need (a model that mostly emits blanks would make every sweep point tie).
    Shared between test modules through pytest's session base directory.
    """
    root = tmp_path_factory.getbasetemp() / "tiny_checkpoint"
    paths = {k: root / name for k, name in (("train_manifest", "manifest.train"), ("test_manifest", "manifest.test"),
                                            ("dataset_vocab", "vocabulary.txt"), ("mean_std_path", "mean_std.npz"))}
    done = {**paths, "checkpoint": root / "ckpt", "lm": root / "lm.arpa", "root": root}
    if (root / "ckpt" / "model.ckpt").is_file():
        return done
    paths = make_tiny_dataset(root)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in overrides(paths, root) if not o.startswith("hydra.")]
                      + ["augment=none", "scheduler=none", "learning_rate=1e-7"])
    pl.seed_everything(0)
    module, datamodule = build_parts(cfg)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(root / "ckpt" / "model.ckpt")
    texts = [json.loads(line)["text"] for line in paths["train_manifest"].read_text(encoding="utf-8").splitlines()]
    build_arpa([tokenize_for_lm(normalize_text(t)) for t in texts], 3, root / "lm.arpa")
    return done


def trained_tiny_checkpoint(tmp_path_factory, epochs: int = 30) -> Path:
    """A checkpoint folder trained until it knows the tiny training utterances (a minute or two of CPU: slow tests).

    It trains on those utterances as the long-file test decodes them (``long_audio.write_training_manifest``):
    trimmed, bare and between stretches of digital silence. Trained on espeak-ng's own files instead, which end in
    about 0.4 s of digital silence, the model emits characters late, in that silence, and drops most of them on the
    trimmed utterances (training-set CER 0.96 after 30 epochs, 0.38 after 400); trained on the bare ones only, it
    emits nothing after 0.1 s of leading silence. Batches of 4, two GRU layers and no dropout make it memorise
    them in 30 epochs.
    """
    tiny = tiny_checkpoint(tmp_path_factory)
    folder = tmp_path_factory.getbasetemp() / f"tiny_trained_{epochs}"
    if (folder / "model.ckpt").is_file():
        return folder
    data = {k: tiny[k] for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")}
    data["train_manifest"] = write_training_manifest(tiny["train_manifest"], folder / "train")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in overrides(data, folder) if not o.startswith("hydra.")]
                      + ["augment=none", "batch_size=4", "learning_rate=5e-3", "model.num_rnn_layers=2",
                         "model.dropout=0.0", f"num_epoch={epochs}"])
    pl.seed_everything(0)
    module, datamodule = build_parts(cfg)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, gradient_clip_val=400, use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder


def run_config(tiny: dict[str, Path], tmp: Path, *extra: str):
    """run.py's composed config (no Hydra run) for the tiny dataset and checkpoint, outputs under ``tmp``."""
    data = {k: tiny[k] for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")}
    args = [o for o in overrides(data, tmp, resume_model=tiny["checkpoint"]) if not o.startswith("hydra.")]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args + list(extra))
