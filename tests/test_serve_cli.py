"""``python run.py task=serve``: the one command starts the service on loopback; bad settings are one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from serve_common import ROOT
from tiny_checkpoint import tiny_checkpoint
from tiny_data import overrides

START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def run_args(tiny, tmp_path, *extra: str) -> list[str]:
    data = {k: tiny[k] for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")}
    return [sys.executable, str(ROOT / "run.py"), "task=serve",
            *overrides(data, tmp_path, resume_model=tiny["checkpoint"]), *extra]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # 30-40 s: a whole run.py start (torch, Hydra, model) plus a request and a graceful stop
def test_run_py_task_serve_answers_until_interrupted(tiny, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(run_args(tiny, tmp_path, f"serve.port={port}"), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "task=serve did not start"
                time.sleep(0.5)
        assert health.json()["status"] == "ok"
        speech = sorted((tiny["root"] / "wav").glob("*.wav"))[0]
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/transcribe", content=speech.read_bytes(), timeout=60)
        assert answer.status_code == 200 and answer.json()["duration"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-3000:]
    assert f"serving on http://localhost:{port}/" in output


def test_a_bad_serve_setting_is_one_line(tiny, tmp_path):
    # every setting's checks: tests/test_serve.py::test_serve_settings_are_checked
    proc = subprocess.run(run_args(tiny, tmp_path, "serve.port=70000"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "serve.port" in errors[0], proc.stderr[-2000:]
