"""Faults during training: a non-finite step is skipped without touching the weights; a failed checkpoint save (full
disk, file size limit) stops with one line and keeps every earlier checkpoint.

Killed processes (SIGKILL) are in test_kill_rounds.py; a loader worker meeting a broken file in
test_messy_training.py.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lit_asr.callbacks.checkpoint import FolderCheckpoint
from lit_asr.errors import LitAsrError
from lit_asr.utils.checkpoints import CHECKPOINT_FILE
from test_checkpoints import run_py

from .common import build_parts, compose_config, error_line


def _trainer(max_steps: int, callbacks: list, **kwargs) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=any(
        isinstance(c, FolderCheckpoint) for c in callbacks), enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False, gradient_clip_val=400.0,
        callbacks=callbacks, **kwargs)


class PoisonBatch(pl.Callback):
    """NaN in one utterance's features at batch ``poisoned``; records the module's state around every step."""

    def __init__(self, poisoned: int):
        self.poisoned = poisoned
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.after: dict[int, dict[str, torch.Tensor]] = {}
        self.adam_steps: dict[int, tuple[float, float]] = {}
        self.skipped_logged: dict[int, float] = {}

    @staticmethod
    def _adam_step(trainer: pl.Trainer) -> float:
        state = trainer.optimizers[0].state
        return max((float(s["step"]) for s in state.values() if "step" in s), default=0.0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.poisoned:
            batch["feats"][0, :10] = float("nan")
        self.before[batch_idx] = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.adam_steps[batch_idx] = (self._adam_step(trainer), 0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[batch_idx] = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.adam_steps[batch_idx] = (self.adam_steps[batch_idx][0], self._adam_step(trainer))
        self.skipped_logged[batch_idx] = float(trainer.callback_metrics["train/skipped_steps"])


def test_non_finite_step_is_skipped_and_leaves_the_model_unchanged(tiny, tmp_path, caplog):
    pl.seed_everything(0)
    module, dm = build_parts(compose_config(tiny, tmp_path, "num_workers=0"))
    poison = PoisonBatch(poisoned=1)
    trainer = _trainer(3, [poison], log_every_n_steps=1)
    with caplog.at_level(logging.WARNING, logger="lit_asr"):
        trainer.fit(module, datamodule=dm)

    def changed(i: int) -> set[str]:
        return {k for k in poison.before[i] if not torch.equal(poison.before[i][k], poison.after[i][k])}

    assert any(k.startswith("net.") and "running" not in k for k in changed(0))  # a normal step updates
    assert changed(1) == set()  # weights, BatchNorm running statistics and counters: all as before
    assert any(k.startswith("net.") for k in changed(2))  # and training goes on
    assert poison.adam_steps[1][0] == poison.adam_steps[1][1]  # the optimiser took no step either
    assert all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())
    assert module.skipped_steps == 1 and poison.skipped_logged == {0: 0.0, 1: 1.0, 2: 1.0}
    assert trainer.global_step == 3
    assert "non-finite loss or gradient at step 1: update skipped (1 so far)" in caplog.text
    # the count goes on across a resume
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert torch.load(tmp_path / "model.ckpt", weights_only=True)["skipped_steps"] == 1


def _checkpoints(folder: Path) -> dict[str, int]:
    """Checkpoint folder name -> global step, each loaded the safe way."""
    return {p.name: torch.load(p / CHECKPOINT_FILE, weights_only=True)["global_step"]
            for p in sorted(folder.iterdir()) if (p / CHECKPOINT_FILE).is_file()}


def test_disk_full_during_a_save_is_one_line_and_keeps_earlier_checkpoints(tiny, tmp_path, monkeypatch):
    import lightning_fabric.plugins.io.torch_io as torch_io

    real_save, calls = torch_io._atomic_save, []

    def fill_disk_on_fifth_write(checkpoint, path):
        calls.append(path)
        if len(calls) == 5:  # step 3's step_3/: write half a file, then the disk is full
            Path(path).write_bytes(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(checkpoint, path)

    monkeypatch.setattr(torch_io, "_atomic_save", fill_disk_on_fifth_write)
    folder = tmp_path / "models"
    module, dm = build_parts(compose_config(tiny, tmp_path, "num_workers=0"))
    saver = FolderCheckpoint(dirpath=str(folder), filename="step_{step}", every_n_train_steps=1, monitor="step",
                             mode="max", save_top_k=2, save_last=True)
    with pytest.raises(LitAsrError) as err:
        _trainer(6, [saver]).fit(module, datamodule=dm)
    assert str(err.value) == (
        f"cannot save checkpoint {folder / 'step_3'}: No space left on device; the checkpoints already in {folder} "
        "are kept: free space or fix the folder, then run the same command to resume")
    # step_1 would have been rotated out by step_3 (save_top_k=2): it is still there, as is everything else
    assert _checkpoints(folder) == {"last_model": 2, "step_1": 1, "step_2": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["last_model", "step_1", "step_2"]  # no half-written .tmp


def _set_file_size_limit(pid: int, limit: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))


def test_file_size_limit_hit_mid_training_in_a_real_run(tiny, tmp_path):
    """A real run.py process whose writes start failing (EFBIG, as from a quota) between two step checkpoints."""
    cmd = run_py(tiny, tmp_path, num_epoch=20, scheduler="none", **{
        "callbacks.step_checkpoints.every_n_train_steps": 1, "callbacks.step_checkpoints.save_top_k": 3})
    console = tmp_path / "console.txt"
    with open(console, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not re.search(r"saved models/deepspeech2/last_model \(step 3\)", console.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, console.read_text()[-3000:]
            time.sleep(0.05)
        # Checkpoints are ~600 KB; the console log stays far below 64 KB, so only checkpoint writes fail.
        _set_file_size_limit(proc.pid, 64 * 1024)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = console.read_text()
    line = error_line(subprocess.CompletedProcess(cmd, proc.returncode, text, err))
    assert re.fullmatch(r"error: cannot save checkpoint models/deepspeech2/(step_\d+|last_model): File too large; "
                        r"the checkpoints already in models/deepspeech2 are kept: free space or fix the folder, then "
                        r"run the same command to resume", line), line
    saved = {name: [int(n) for n in re.findall(rf"saved models/deepspeech2/{name} \(step (\d+)\)", text)]
             for name in ("last_model", r"step_\d+")}
    kept = _checkpoints(tmp_path / "models" / "deepspeech2")
    assert kept["last_model"] == saved["last_model"][-1] >= 3  # the newest complete save survives, loadable
    steps = sorted(v for k, v in kept.items() if k.startswith("step_"))
    assert steps == saved[r"step_\d+"][-3:]  # the newest three step_N/ that were saved are all there, loadable
    assert not [p for p in (tmp_path / "models" / "deepspeech2").iterdir() if p.suffix in (".tmp", ".old", ".del")]
