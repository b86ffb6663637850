"""Real training on tiny espeak-ng data: the data module, a loss that goes down, evaluation of a checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from lit_asr.tasks.train import build_parts
from tiny_data import make_tiny_dataset, overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _cfg(tiny, tmp_path, *extra):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[o for o in overrides(tiny, tmp_path) if not o.startswith("hydra.")]
                       + list(extra))


def test_datamodule_with_and_without_augmentation(tiny, tmp_path):
    torch.manual_seed(0)
    _, plain = build_parts(_cfg(tiny, tmp_path, "augment=none"))
    plain.setup("fit")
    item_a, item_b = plain.train_set[0], plain.train_set[0]
    assert torch.equal(item_a["feats"], item_b["feats"])  # no augmentation: deterministic features
    # normalised features: roughly zero mean, unit variance over the training set
    feats = torch.cat([plain.train_set[i]["feats"] for i in range(len(plain.train_set))])
    assert abs(float(feats.mean())) < 0.1 and abs(float(feats.std()) - 1) < 0.1

    _, augmented = build_parts(_cfg(tiny, tmp_path, "augment=default"))
    augmented.setup("fit")
    assert augmented.wave_augment is not None and augmented.spec_augment is not None
    a, b = augmented.train_set[0], augmented.train_set[0]
    assert a["feats"].shape != b["feats"].shape or not torch.equal(a["feats"], b["feats"])
    assert augmented.test_set.wave_augment is None and augmented.test_set.spec_augment is None

    batch = next(iter(plain.train_dataloader()))
    assert batch["feats"].ndim == 3 and batch["feats"].shape[0] == len(batch["texts"]) <= 8
    assert batch["feat_lengths"].max() == batch["feats"].shape[1]
    assert batch["tokens"].shape[0] == batch["token_lengths"].shape[0]


def test_short_training_lowers_loss_and_checkpoint_evaluates(tiny, tmp_path):
    pl.seed_everything(0)
    cfg = _cfg(tiny, tmp_path, "augment=none", "learning_rate=3e-3", "num_epoch=12")
    module, dm = build_parts(cfg)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
                         num_sanity_val_steps=0, gradient_clip_val=400, use_distributed_sampler=False)
    trainer.fit(module, datamodule=dm)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert 0.0 <= float(trainer.callback_metrics["val/cer"]) <= 1.5

    ckpt_dir = tmp_path / "ckpt"
    trainer.save_checkpoint(ckpt_dir / "model.ckpt")
    run_dir = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "task=eval", f"resume_model={ckpt_dir}",
         f"test_manifest={tiny['test_manifest']}", f"hydra.run.dir={run_dir}", f"task.cache_dir={tmp_path / 'cache'}",
         "num_workers=0"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["utterances"] == 8 and 0.0 <= result["cer"] <= 1.5
    assert "cer:" in proc.stdout


def test_missing_manifest_is_one_line_error(tiny, tmp_path):
    args = overrides(tiny, tmp_path, train_manifest=str(tmp_path / "nope.train"), num_epoch=1)
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("error: manifest not found") and "Traceback" not in proc.stderr
