"""Resuming: from the newest complete checkpoint, at the next unseen batch, keeping the checkpoint's settings."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lit_asr.tasks import train as train_task
from lit_asr.utils import checkpoints as ckpt
from test_checkpoints import global_step, train

from .common import compose_config

STEPS_PER_EPOCH = 6  # the tiny train set: 48 utterances, batch_size 8


class SeenUtterances(pl.Callback):
    """Appends each training batch's utterances to a JSON-lines file; sends itself SIGTERM after ``stop_at_step``."""

    def __init__(self, path: str, stop_at_step: int = -1):
        self.path, self.stop_at_step = Path(path), stop_at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"epoch": trainer.current_epoch, "audio": [Path(a).name for a in batch["audio"]]})
                      + "\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop_at_step:
            os.kill(os.getpid(), signal.SIGTERM)  # GracefulStop (after this callback) stops at this batch's end


def _run(tiny: dict, tmp: Path, seen: Path, stop_at_step: int = -1, *extra: str) -> int:
    """run.py's training in this process, recording what it trains on; 0 when it finished, else its exit status."""
    target = f"{__name__}.SeenUtterances"
    seen.parent.mkdir(parents=True, exist_ok=True)
    cfg = compose_config(tiny, tmp, "num_epoch=2", f"trainer.default_root_dir={tmp}", "num_workers=0",
                         f"+callbacks.seen._target_={target}", f"+callbacks.seen.path={seen}",
                         f"+callbacks.seen.stop_at_step={stop_at_step}", *extra)
    try:
        train_task.run(cfg)
    except SystemExit as stopped:
        return int(stopped.code)
    return 0


def _by_epoch(seen: Path) -> dict[int, list[list[str]]]:
    epochs: dict[int, list[list[str]]] = {}
    for line in seen.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        epochs.setdefault(item["epoch"], []).append(item["audio"])
    return epochs


@pytest.mark.slow  # four short trainings in this process: 60-200 s on the busy 2-core machine
def test_interrupted_run_trains_on_exactly_the_batches_of_an_uninterrupted_one(tiny, tmp_path, caplog):
    whole = tmp_path / "whole"
    assert _run(tiny, whole, whole / "seen.jsonl") == 0
    expected = _by_epoch(whole / "seen.jsonl")
    assert [len(expected[e]) for e in range(2)] == [STEPS_PER_EPOCH] * 2
    assert expected[0] != expected[1]  # each epoch has its own order (it once repeated epoch 1's)

    cut = tmp_path / "cut"
    # SIGTERM mid-epoch 1 (after its 4th batch), then after its last batch (before its test pass), then run to the
    # end. The last run asks for other settings: a resume keeps the checkpoint's (the batch order with them) and
    # says so.
    assert _run(tiny, cut, cut / "seen.jsonl", 4) == 128 + signal.SIGTERM
    assert _run(tiny, cut, cut / "seen.jsonl", 6) == 128 + signal.SIGTERM
    with caplog.at_level(logging.INFO, logger="lit_asr"):
        assert _run(tiny, cut, cut / "seen.jsonl", -1, "learning_rate=0.01", "batch_size=4") == 0
    assert _by_epoch(cut / "seen.jsonl") == expected
    assert global_step(cut / "models" / "deepspeech2" / "last_model") == 2 * STEPS_PER_EPOCH
    assert "resuming from models/deepspeech2/last_model (epoch 1 at batch 6, step 6)" in caplog.text.replace(
        str(cut) + "/", "")
    warning = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming keeps")]
    assert warning == [
        "resuming keeps the checkpoint's learning_rate=0.001, batch_size=8 (this run sets learning_rate=0.01, "
        "batch_size=4): a resume continues the saved run; to train with the new values start a new run from its "
        f"weights: use_model=NEW pretrained_model={cut / 'models' / 'deepspeech2' / 'last_model'}"]


def _fake(folder: Path, step: int) -> None:
    folder.mkdir(parents=True)
    torch.save({"global_step": step}, folder / ckpt.CHECKPOINT_FILE)


def test_newest_complete_checkpoint_wins_by_global_step(tmp_path, caplog):
    _fake(tmp_path / "last_model", 6)
    _fake(tmp_path / "epoch_1", 6)
    _fake(tmp_path / "step_4", 4)
    assert ckpt.newest_checkpoint(tmp_path) == (tmp_path / "last_model" / ckpt.CHECKPOINT_FILE, 6)  # a tie
    _fake(tmp_path / "step_8.old", 8)  # killed between the renames of step_8's save, then during last_model's
    _fake(tmp_path / "step_10.tmp", 10)  # a save under way: never read
    _fake(tmp_path / "best_model", 12)  # not a resume point (the best, not the newest)
    (tmp_path / "step_9").mkdir()  # no model.ckpt
    assert ckpt.newest_checkpoint(tmp_path) == (tmp_path / "step_8.old" / ckpt.CHECKPOINT_FILE, 8)
    (tmp_path / "step_12").mkdir()
    (tmp_path / "step_12" / ckpt.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="lit_asr"):
        assert ckpt.newest_checkpoint(tmp_path)[1] == 8
    assert "cannot read checkpoint" in caplog.text and "not resuming from it" in caplog.text
    assert ckpt.newest_checkpoint(tmp_path / "nothing") is None


@pytest.fixture(scope="module")
def one_epoch(tiny, tmp_path_factory):
    """One epoch with step checkpoints every 2 steps: step_2, step_4, step_6, epoch_1 and last_model."""
    tmp = tmp_path_factory.mktemp("one_epoch")
    proc = train(tiny, tmp, num_epoch=1, scheduler="none", **{"callbacks.step_checkpoints.every_n_train_steps": 2,
                                                              "callbacks.step_checkpoints.save_top_k": -1})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "models" / "deepspeech2"


def test_rerun_after_a_failed_last_model_save_resumes_the_newest_step(tiny, one_epoch, tmp_path):
    """What a disk that filled up while last_model was written leaves: step_4 complete, last_model missing (first
    save) or older. "Run the same command to resume" must resume step_4, not start afresh over it."""
    folder = tmp_path / "models" / "deepspeech2"
    folder.mkdir(parents=True)
    shutil.copytree(one_epoch / "step_2", folder / "last_model")
    shutil.copytree(one_epoch / "step_4", folder / "step_4")
    proc = train(tiny, tmp_path, num_epoch=2, scheduler="none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from models/deepspeech2/step_4 (epoch 1 at batch 4, step 4)" in proc.stdout
    assert "models/deepspeech2/step_4 is the newest complete checkpoint (last_model is older or missing)" in proc.stdout
    assert global_step(folder / "last_model") == 2 * STEPS_PER_EPOCH
    assert global_step(folder / "step_4") == 4  # never overwritten by a run started afresh
