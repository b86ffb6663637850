"""SIGTERM / Ctrl-C sent to the whole process group (as Slurm, systemd and `kill -TERM -- -PGID` do) while loader
workers run: the run stops cleanly, in training and in validation, and a second Ctrl-C is one line.

Training starts in its own session (`start_new_session=True`, i.e. `setsid`) and the group is signalled with
os.killpg; no GNU `timeout` wraps it (it would send the signal again).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_checkpoints import global_step
from test_resume import kill_group, start, wait_for

from .common import ROOT, manifest_items, write_jsonl

STOPPED_AT = re.compile(r"(SIGTERM|SIGINT) received: stopping after step (\d+)")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _wait_for_children(proc: subprocess.Popen, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_children(proc.pid)) < count:
        assert proc.poll() is None and time.monotonic() < deadline, (proc.returncode, _children(proc.pid))
        time.sleep(0.01)


def _signal_group_and_wait(proc: subprocess.Popen, signum: int) -> int:
    try:
        os.killpg(proc.pid, signum)
        return proc.wait(timeout=120)
    finally:
        kill_group(proc)


def _check_clean_stop(text: str, status: int, signum: int, folder: Path) -> int:
    """Exit 128+signum, the stop line, no traceback or worker error; last_model holds the step the log named."""
    name = signal.Signals(signum).name
    assert status == 128 + signum, text[-3000:]
    assert "Traceback" not in text and "DataLoader worker" not in text, text[-3000:]
    assert f"training stopped by {name}; models/deepspeech2/last_model holds the state" in text, text[-3000:]
    stops = STOPPED_AT.findall(text)
    assert len(stops) == 1 and stops[0][0] == name, stops
    step = int(stops[0][1])
    assert global_step(folder / "last_model") == step  # loads with weights_only=True
    assert not [p.name for p in folder.iterdir() if p.suffix in (".tmp", ".old", ".del")]
    return step


def test_sigterm_to_the_group_during_training_with_two_workers(tiny, tmp_path):
    # 48 batches an epoch, so that the steps trained while the test notices batch 2 still leave the signal mid-epoch.
    proc, out = start(tiny, tmp_path, num_epoch=20, num_workers=2, scheduler="none", batch_size=1,
                      **{"callbacks.step_checkpoints.every_n_train_steps": 1000})
    try:
        wait_for(proc, out, r"Train epoch: \[1/20\], batch: \[2/48\]")
        # the training and validation loaders' two workers each (forked before training) share the group
        assert len(_children(proc.pid)) == 4
        status = _signal_group_and_wait(proc, signal.SIGTERM)
    finally:
        kill_group(proc)
    step = _check_clean_stop(out.read_text(), status, signal.SIGTERM, tmp_path / "models" / "deepspeech2")
    assert 2 <= step < 48


@pytest.mark.slow  # 50 s on the busy 2-core machine: a longer test set, so that validation can be caught
def test_ctrl_c_to_the_group_during_validation_with_two_workers(tiny, tmp_path):
    # A test set 25 times the tiny one makes validation last long enough to be caught in the middle.
    long_test = write_jsonl(tmp_path / "manifest.long_test", manifest_items(tiny["test_manifest"]) * 25)
    proc, out = start({**tiny, "test_manifest": long_test}, tmp_path, num_epoch=20, num_workers=2, scheduler="none",
                      **{"callbacks.step_checkpoints.every_n_train_steps": 1000})
    try:
        wait_for(proc, out, r"Train epoch: \[1/20\], batch: \[6/6\]")
        assert "Test epoch" not in out.read_text()
        status = _signal_group_and_wait(proc, signal.SIGINT)
    finally:
        kill_group(proc)
    text = out.read_text()
    # Validation finished, the epoch's checkpoints were written, and the run stopped before epoch 2's first step.
    assert "Test epoch: 1" in text and "saved models/deepspeech2/epoch_1 (step 6)" in text, text[-3000:]
    assert _check_clean_stop(text, status, signal.SIGINT, tmp_path / "models" / "deepspeech2") == 6


SECOND_CTRL_C = """
import os, signal, sys, time
from types import SimpleNamespace
from lit_asr.callbacks.checkpoint import GracefulStop
stop = GracefulStop(sys.argv[1])
stop.on_train_start(SimpleNamespace(is_global_zero=True), None)
os.kill(os.getpid(), signal.SIGINT)
print("first Ctrl-C recorded:", stop.signum == signal.SIGINT, flush=True)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(5)
print("not reached", flush=True)
"""


def test_second_ctrl_c_aborts_with_one_line_and_status_130(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SECOND_CTRL_C, str(tmp_path / "models" / "m")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 130
    assert proc.stdout == "first Ctrl-C recorded: True\n"
    assert proc.stderr == ("aborted by a second Ctrl-C, without saving; the checkpoints already in models/m are kept: "
                           "run the same command to resume\n")


def test_loader_workers_ignore_stop_signals():
    """The unit under the group tests: a loader worker survives SIGINT and SIGTERM (the main process decides)."""
    code = ("import os, signal\nfrom lit_asr.data.datamodule import init_loader_worker\ninit_loader_worker(0, rank=0)\n"
            "os.kill(os.getpid(), signal.SIGINT)\nos.kill(os.getpid(), signal.SIGTERM)\nprint('alive')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0 and proc.stdout == "alive\n", proc.stderr[-2000:]
