"""SIGKILL at random moments, mid-save included, several rounds, restarting each time: nothing is ever lost.

After every kill ``last_model`` loads with ``torch.load(weights_only=True)`` and holds at least the newest step the
console reported saved (so the step counter never goes back), every other checkpoint folder loads too, and the
next start resumes from exactly that step; the final run completes the planned steps and leaves no debris.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lit_asr.callbacks.checkpoint import FolderCheckpoint, GracefulStop
from lit_asr.tasks import train as train_task
from lit_asr.utils.checkpoints import CHECKPOINT_FILE, find_checkpoint
from test_checkpoints import global_step, train
from test_resume import RESUMED, kill_group, start, wait_for

from .common import compose_config

STEPS_PER_EPOCH = 6  # the tiny train set: 48 utterances, batch_size 8
SAVED = re.compile(r"saved models/deepspeech2/last_model \(step (\d+)\)")
IN_FLIGHT = (".tmp", ".old", ".del")  # a save or deletion under way


def _names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


def kill_mid_save(proc, folder: Path, timeout: float = 120) -> list[str] | None:
    """SIGKILL while a checkpoint is being written or swapped in; the folder as it was at the kill (None: ended).

    SIGSTOP first, so the listing shows exactly what the kill interrupted; if the save finished in between,
    let it go on and catch the next one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(n.endswith((".tmp", ".old")) for n in _names(folder)):
            os.kill(proc.pid, signal.SIGSTOP)
            names = _names(folder)
            if any(n.endswith((".tmp", ".old")) for n in names):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return names
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.001)
    return None


def check_after_kill(folder: Path, console: str, floor: int) -> int:
    """Everything on disk loads the safe way; last_model's step is at least ``floor`` and the newest step the
    console reported saved. Returns the step the next start resumes from: the newest complete checkpoint's."""
    logged = [int(s) for s in SAVED.findall(console)]
    found = find_checkpoint(folder / "last_model")
    if found is None:
        assert not logged and floor == 0, (logged, _names(folder))  # killed before its first save completed
        return 0
    step = torch.load(found, map_location="cpu", weights_only=True)["global_step"]
    assert step >= max(logged + [floor]), (step, logged[-3:], floor, _names(folder))
    newest = step
    for name in _names(folder):
        if not name.endswith(IN_FLIGHT) and (folder / name / CHECKPOINT_FILE).is_file():
            saved = torch.load(folder / name / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
            if name != "best_model":
                newest = max(newest, saved["global_step"])
    return newest


def kill_rounds(tiny: dict, tmp: Path, plan: list[str], num_epoch: int, seed: int = 0) -> dict:
    """Start, kill as ``plan`` says ("save", "train" or "startup"), check, restart; then run to the end."""
    rng = random.Random(seed)
    args = {"num_epoch": num_epoch, "callbacks.step_checkpoints.every_n_train_steps": 1,
            "callbacks.step_checkpoints.save_top_k": 2}
    folder = tmp / "models" / "deepspeech2"
    step, mid_save, resumed = 0, 0, []
    for r, how in enumerate(plan):
        proc, out = start(tiny, tmp, **args)
        try:
            if how == "startup":  # anywhere from the imports to the first steps
                time.sleep(rng.uniform(0.5, 6.0))
            elif how == "train":
                wait_for(proc, out, r"Train epoch: ")  # training runs (and start-up tidied old debris)
                time.sleep(rng.uniform(0.0, 1.0))
            else:  # after this run's first complete save, so there is something to lose
                wait_for(proc, out, SAVED.pattern)
            if how == "save":
                names = kill_mid_save(proc, folder)
                assert names is not None, "training ended before a save could be interrupted"
                mid_save += 1
            elif proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            kill_group(proc)
        console = out.read_text(errors="replace")
        assert proc.returncode == -signal.SIGKILL, (r, how, proc.returncode, console[-2000:])
        match = RESUMED.search(console)
        if match:
            resumed.append(int(match.group(2)))
            assert resumed[-1] == step, (r, resumed, step)  # resumed from exactly what the last kill left
        step = check_after_kill(folder, console, step)

    done = train(tiny, tmp, **args)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    match = RESUMED.search(done.stdout)
    assert (int(match.group(2)) if match else 0) == step, done.stdout[-2000:]
    total = STEPS_PER_EPOCH * num_epoch
    assert global_step(folder / "last_model") == total
    assert global_step(folder / f"epoch_{num_epoch}") == total
    assert not [n for n in _names(folder) if n.endswith(IN_FLIGHT)]
    return {"steps_at_kills": step, "mid_save_kills": mid_save, "resumed": resumed + ([step] if match else [])}


def test_sigkill_mid_save_then_resume(tiny, tmp_path):
    """The default suite's round: one kill while a checkpoint is being written, then run to completion."""
    result = kill_rounds(tiny, tmp_path, ["save"], num_epoch=3)
    assert result["mid_save_kills"] == 1 and result["resumed"] == [result["steps_at_kills"]] and \
        result["steps_at_kills"] >= 1


@pytest.mark.slow
def test_five_rounds_of_sigkill_at_random_moments(tiny, tmp_path):
    plan = ["save", "train", "startup", "save", "train"]
    result = kill_rounds(tiny, tmp_path, plan, num_epoch=12, seed=int(os.environ.get("KILL_SEED", "6")))
    assert result["mid_save_kills"] == 2 and len(result["resumed"]) >= 4


def _train_in_process(tiny: dict, tmp: Path, num_epoch: int, *extra: str) -> None:
    """run.py's training task in this process: step checkpoints at every epoch's last batch, constant LR."""
    train_task.run(compose_config(tiny, tmp, f"num_epoch={num_epoch}", "scheduler=none",
                                  f"callbacks.step_checkpoints.every_n_train_steps={STEPS_PER_EPOCH}",
                                  "callbacks.step_checkpoints.save_top_k=-1", f"trainer.default_root_dir={tmp}",
                                  *extra))


def _epochs(folder: Path) -> dict:
    return torch.load(folder / CHECKPOINT_FILE, weights_only=True)["loops"]["fit_loop"]["epoch_progress"]["total"]


def test_a_step_checkpoint_due_at_an_epochs_last_batch_is_written_at_its_end(tiny, tmp_path):
    """Written between the last batch and validation, a kill during the final epoch's validation left a run that,
    resumed, ended at once without that validation or epoch_N/ (found by a CI run of the SIGKILL test)."""
    folder = tmp_path / "models" / "deepspeech2"
    _train_in_process(tiny, tmp_path, 1)
    assert _epochs(folder / "step_6") == _epochs(folder / "epoch_1") == \
        {"ready": 1, "started": 1, "processed": 1, "completed": 0}
    shutil.rmtree(folder / "epoch_1")
    _train_in_process(tiny, tmp_path, 2, f"resume_model={folder / 'step_6'}")
    assert global_step(folder / "epoch_2") == global_step(folder / "step_12") == 12  # resumed as from epoch_1
    assert not (folder / "epoch_1").exists()  # epoch 1 was not trained again


def test_resume_after_an_epochs_last_batch_loses_no_epoch(tiny, tmp_path, monkeypatch):
    """What earlier versions left when killed right after an epoch's last step: a checkpoint taken after the last
    batch, before the epoch's end. Lightning 2.6 alone resumes it so that a later resume skips a whole epoch."""
    folder = tmp_path / "models" / "deepspeech2"
    with monkeypatch.context() as old:  # step checkpoints saved at the last batch, as before they waited
        old.setattr(FolderCheckpoint, "on_train_batch_end", ModelCheckpoint.on_train_batch_end)
        _train_in_process(tiny, tmp_path, 1)
    assert _epochs(folder / "step_6") == {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    _train_in_process(tiny, tmp_path, 2, f"resume_model={folder / 'step_6'}")
    assert global_step(folder / "last_model") == 12
    assert _epochs(folder / "epoch_2") == {"ready": 2, "started": 2, "processed": 2, "completed": 1}
    _train_in_process(tiny, tmp_path, 3)  # resumes last_model, an ordinary end-of-epoch checkpoint
    assert global_step(folder / "last_model") == 18 and global_step(folder / "epoch_3") == 18

    # A checkpoint written before this was fixed (counters one epoch behind) is repaired when resumed.
    behind = torch.load(folder / "epoch_2" / CHECKPOINT_FILE, weights_only=True)
    for counts in behind["loops"]["fit_loop"]["epoch_progress"].values():
        counts["ready"] = counts["started"] = counts["completed"]
    (tmp_path / "behind").mkdir()
    torch.save(behind, tmp_path / "behind" / CHECKPOINT_FILE)
    _train_in_process(tiny, tmp_path, 3, f"resume_model={tmp_path / 'behind'}", "use_model=repaired")
    assert global_step(tmp_path / "models" / "repaired" / "last_model") == 18


def test_a_signal_during_an_epochs_last_batch_stops_after_its_validation(tiny, tmp_path, monkeypatch, caplog):
    """Stopped right there, the run would leave last_model at a checkpoint whose epoch end never runs on resume."""
    def signal_at_the_last_batch(stop, trainer, pl_module, batch, batch_idx):
        if batch_idx == STEPS_PER_EPOCH - 1:
            stop.signum = signal.SIGTERM  # what GracefulStop's handler records

    monkeypatch.setattr(GracefulStop, "on_train_batch_start", signal_at_the_last_batch, raising=False)
    folder = tmp_path / "models" / "deepspeech2"
    with pytest.raises(SystemExit) as stopped:
        _train_in_process(tiny, tmp_path, 3)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "SIGTERM received: stopping after step 6" in caplog.text
    assert global_step(folder / "best_model") == 6  # chosen by val/cer: the epoch's validation ran
    assert global_step(folder / "last_model") == global_step(folder / "epoch_1") == 6
    assert _epochs(folder / "last_model") == {"ready": 1, "started": 1, "processed": 1, "completed": 0}
