"""Multi-node DDP on loopback: 2 nodes x 1 process (torchrun, gloo) train exactly as 1 node x 2 processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from test_checkpoints import ROOT, global_step, run_py, shared_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_cers(text: str) -> list[str]:
    return re.findall(r"Test epoch: \d+, .*cer: ([0-9.]+)", text)


def test_two_nodes_match_one_node_with_two_processes(tiny, tmp_path):
    common = {"num_epoch": 2, "batch_size": 4, "seed": 7, "trainer.accelerator": "cpu", "trainer.strategy": "ddp"}
    one = subprocess.run(run_py(tiny, tmp_path / "one", **common, **{"trainer.devices": 2}),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    port, procs = _free_port(), []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
               *run_py(tiny, tmp_path / "two", **common, **{"trainer.devices": 1, "trainer.num_nodes": 2,
                                                             "hydra.run.dir": tmp_path / "two" / f"node{node}"})[1:]]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]

    single, multi = tmp_path / "one" / "models" / "deepspeech2", tmp_path / "two" / "models" / "deepspeech2"
    assert global_step(multi / "last_model") == global_step(single / "last_model") > 0
    assert _test_cers(outputs[0]) == _test_cers(one.stdout + one.stderr) != []
    assert "saved " not in outputs[1]  # only global rank 0 writes to the shared folder
