"""A real two-process DDP training on CPU (gloo): one writer, one set of folders, test-set-wide metrics."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from visualdl.reader.reader import LogReader

from test_checkpoints import ROOT, global_step, shared_tiny, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def test_two_process_ddp_trains_and_saves_once(tiny, tmp_path):
    # batch_size 4: 12 training batches shared by 2 ranks (6 steps per epoch), and each rank gets a test batch.
    proc = train(tiny, tmp_path, timeout=400, num_epoch=2, batch_size=4, logger="visualdl",
                 **{"trainer.devices": 2, "trainer.strategy": "ddp", "trainer.accelerator": "cpu",
                    "callbacks.step_checkpoints.every_n_train_steps": 4})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr

    folder = tmp_path / "models" / "deepspeech2"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best_model", "epoch_1", "epoch_2", "last_model", "step_12", "step_4", "step_8"]
    assert global_step(folder / "last_model") == 12
    # only rank zero saves: each folder is announced once, and rank 1 (its log is in the same run folder) saves none
    for name in ("epoch_1", "epoch_2", "step_4", "step_8", "step_12"):
        assert proc.stdout.count(f"saved models/deepspeech2/{name} (") == 1, name
    rank1_log = tmp_path / "outputs" / "train_ddp_process_1.log"
    assert rank1_log.is_file() and "saved " not in rank1_log.read_text()

    # one VisualDL writer; val/cer is over the whole test set, as a single-process eval of the same weights says
    files = sorted((tmp_path / "log").glob("vdlrecords.*.log"))
    assert len(files) == 1
    val_cer = LogReader(file_path=str(files[0])).get_data("scalar", "val/cer")
    assert [r.id for r in val_cer] == [5, 11]
    run_dir = tmp_path / "eval"
    evaluated = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "task=eval", f"resume_model={folder / 'epoch_2'}",
         f"test_manifest={tiny['test_manifest']}", f"hydra.run.dir={run_dir}", "task.cache_dir=null",
         "num_workers=0"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["cer"] == pytest.approx(val_cer[-1].value, abs=1e-5)
    assert result["utterances"] == len(Path(tiny["test_manifest"]).read_text().splitlines())
