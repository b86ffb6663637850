"""Faults under DDP (2 CPU ranks, gloo): a batch with nothing loadable does not end the run; a failed save on rank
zero stops every rank at once with the one-line error."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_checkpoints import global_step, run_py, train

from .common import error_line, manifest_items, write_jsonl

DDP = {"trainer.devices": 2, "trainer.strategy": "ddp", "trainer.accelerator": "cpu"}
EMPTY = re.compile(r"training batch \d+: no utterance could be loaded \(see above\); it contributes nothing "
                   r"\((\d+) such batches so far\)")


@pytest.mark.slow  # two ranks starting up: 60-120 s on the busy 2-core machine
def test_a_batch_of_unloadable_audio_does_not_end_a_ddp_run(tiny, tmp_path):
    good = manifest_items(tiny["train_manifest"])[:6]
    for name in ("corrupt1.wav", "corrupt2.wav"):
        (tmp_path / name).write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really audio" * 40)
    lines = good + [{**good[0], "audio_filepath": str(tmp_path / n)} for n in ("corrupt1.wav", "corrupt2.wav")]
    paths = {**tiny, "train_manifest": write_jsonl(tmp_path / "manifest.train", lines)}
    # batch_size 1: 8 batches, 4 steps per rank; the two corrupt files make two batches with nothing in them.
    proc = train(paths, tmp_path, timeout=400, num_epoch=1, batch_size=1, sortagrad_epochs=0, **DDP)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in console, console[-3000:]
    assert "not supported" not in console  # Lightning's refusal of a skipped step under DDP
    counts = [int(n) for n in EMPTY.findall(console)]  # each rank counts its own
    assert sorted(counts) in ([1, 2], [1, 1]), console[-3000:]
    assert global_step(tmp_path / "models" / "deepspeech2" / "last_model") == 4


def _set_file_size_limit(pid: int, limit: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow  # two ranks starting up: 60-120 s on the busy 2-core machine
def test_a_failed_save_on_rank_zero_stops_every_rank_with_one_line(tiny, tmp_path):
    cmd = run_py(tiny, tmp_path, num_epoch=20, scheduler="none", batch_size=4, **DDP, **{
        "callbacks.step_checkpoints.every_n_train_steps": 1, "callbacks.step_checkpoints.save_top_k": 3})
    console = tmp_path / "console.txt"
    with open(console, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not re.search(r"saved models/deepspeech2/last_model \(step 2\)", console.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, console.read_text()[-3000:]
            time.sleep(0.05)
        # Rank zero is this process (Lightning starts rank 1 as its child); only rank zero writes checkpoints.
        _set_file_size_limit(proc.pid, 64 * 1024)
        _, err = proc.communicate(timeout=240)  # well before the 30-minute collective timeout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = console.read_text()
    line = error_line(subprocess.CompletedProcess(cmd, proc.returncode, text, err))
    assert re.fullmatch(r"error: cannot save checkpoint models/deepspeech2/(step_\d+|last_model): File too large; "
                        r"the checkpoints already in models/deepspeech2 are kept: .*", line), line
    assert "Traceback" not in text + err and "rank zero could not save" not in text + err
    # Rank 1 ends too (quietly, it is rank zero that reports), instead of waiting at a barrier for the collective
    # timeout (30 minutes); give it time to tear down on a busy machine.
    deadline = time.monotonic() + 60
    while (alive := _group(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, [Path(f"/proc/{pid}/cmdline").read_bytes()[:300] for pid in alive]


def _group(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
