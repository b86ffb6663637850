"""Real processes killed mid-training: SIGKILL then resume from last_model; SIGTERM writes last_model and exits."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lit_asr.utils.checkpoints import find_checkpoint
from test_checkpoints import global_step, run_py, shared_tiny, train

RESUMED = re.compile(
    r"resuming from models/deepspeech2/(?:last_model|epoch_\d+|step_\d+)(?:\.old)? \((.+), step (\d+)\)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def start(tiny: dict, tmp: Path, **extra) -> tuple[subprocess.Popen, Path]:
    """Start training in the background, its console going to a file we can watch."""
    out = tmp / "console.txt"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(run_py(tiny, tmp, **extra), stdout=stdout, stderr=subprocess.STDOUT, cwd=tmp,
                                start_new_session=True)
    return proc, out


def kill_group(proc: subprocess.Popen) -> None:
    """Make sure the training process (and anything it started) is gone."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_for(proc: subprocess.Popen, out: Path, pattern: str, timeout: float = 240) -> str:
    """Wait until the console shows ``pattern`` (a regex); fail if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            pytest.fail(f"training ended (status {proc.returncode}) before {pattern!r}:\n{text[-3000:]}")
        time.sleep(0.02)  # a tiny step takes tens of ms: look often, so the process is caught near the line
    kill_group(proc)
    pytest.fail(f"no {pattern!r} within {timeout}s:\n{out.read_text(errors='replace')[-3000:]}")


def test_sigkill_mid_run_then_resume_keeps_the_step_count(tiny, tmp_path):
    args = {"num_epoch": 3, "callbacks.step_checkpoints.every_n_train_steps": 2}
    proc, out = start(tiny, tmp_path, **args)
    try:
        wait_for(proc, out, r"saved models/deepspeech2/last_model \(step 8\)")
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: whatever is on disk now must do
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    folder = tmp_path / "models" / "deepspeech2"
    killed_at = global_step(find_checkpoint(folder / "last_model").parent)
    assert killed_at >= 8

    done = train(tiny, tmp_path, **args)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    match = RESUMED.search(done.stdout)
    assert match and int(match.group(2)) == killed_at, done.stdout[-3000:]
    # the resumed run finishes the same 3 x 6 steps, numbering its step checkpoints on from where it was killed
    assert global_step(folder / "last_model") == 18
    assert (folder / "step_18").is_dir() and (folder / "epoch_3").is_dir()
    assert not [p.name for p in folder.iterdir() if p.suffix in (".tmp", ".old", ".del")]


def test_sigterm_saves_last_model_and_exits(tiny, tmp_path):
    # A constant learning rate lets the resume below choose its own num_epoch.
    args = {"scheduler": "none", "callbacks.step_checkpoints.every_n_train_steps": 1000}
    proc, out = start(tiny, tmp_path, num_epoch=20, **args)
    try:
        wait_for(proc, out, r"Train epoch: \[1/20\], batch: \[2/6\]")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=120)
    finally:
        kill_group(proc)
    text = out.read_text()
    assert status == 128 + signal.SIGTERM, text[-3000:]
    assert "training stopped by SIGTERM; models/deepspeech2/last_model holds the state" in text
    stopped_at = global_step(tmp_path / "models" / "deepspeech2" / "last_model")
    assert stopped_at >= 2

    epochs = stopped_at // 6 + 1  # finish the epoch it was stopped in
    done = train(tiny, tmp_path, num_epoch=epochs, **args)
    assert done.returncode == 0, done.stderr[-3000:]
    match = RESUMED.search(done.stdout)
    assert match and int(match.group(2)) == stopped_at, done.stdout[-3000:]
    assert global_step(tmp_path / "models" / "deepspeech2" / "last_model") == 6 * epochs
