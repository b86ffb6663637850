"""task=eval and task=infer through the Recognizer: predictions.jsonl, output formats, the device setting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torchmetrics.functional.text import char_error_rate

from lit_asr.errors import LitAsrError
from lit_asr.inference.formats import srt_time
from lit_asr.tasks import export, infer
from tiny_checkpoint import ROOT, run_config, tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_eval_writes_predictions_beside_the_result_on_the_auto_device(tiny, tmp_path):
    run_dir = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "task=eval", f"resume_model={tiny['checkpoint']}",
         f"test_manifest={tiny['test_manifest']}", f"hydra.run.dir={run_dir}", f"task.cache_dir={tmp_path / 'cache'}",
         "num_workers=0", "device=auto"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"model ran on {expected}" in proc.stdout + proc.stderr
    result = json.loads((run_dir / "result.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    manifest = [json.loads(line) for line in tiny["test_manifest"].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == result["utterances"] == len(manifest)
    assert sorted(r["audio"] for r in rows) == sorted(m["audio_filepath"] for m in manifest)
    for row in rows:
        assert row["cer"] == pytest.approx(float(char_error_rate(row["hypothesis"], row["reference"])))
    corpus = float(char_error_rate([r["hypothesis"] for r in rows], [r["reference"] for r in rows]))
    assert corpus == pytest.approx(result["cer"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without a GPU gives")
def test_device_cuda_without_a_gpu_is_a_one_line_error(tiny, tmp_path):
    wav = sorted((tiny["root"] / "wav").glob("*.wav"))[0]
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "task=infer", f"resume_model={tiny['checkpoint']}",
                           f"audio_path={wav}", "device=cuda", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: device=cuda asked for, but no CUDA GPU")
    for task in (export, infer):  # the same check in every task that runs the model
        with pytest.raises(LitAsrError, match="no CUDA GPU"):
            task.run(run_config(tiny, tmp_path, f"task={task.__name__.rsplit('.', 1)[-1]}", f"audio_path={wav}",
                                f"task.output_dir={tmp_path / 'out'}", "device=cuda"))


def test_infer_json_and_srt(tiny, tmp_path, capsys):
    wav = sorted((tiny["root"] / "wav").glob("*.wav"))[0]
    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={wav}", "output_format=json", "device=cpu"))
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["audio"] == str(wav) and line["text"] and line["segments"][0]["start"] == 0.0
    assert "".join(c["token"] for c in line["chars"]) == line["text"].replace(" ", "")

    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={wav}", "output_format=srt"))
    srt = capsys.readouterr().out
    assert srt.startswith(f"1\n00:00:00,000 --> {srt_time(line['segments'][0]['end'])}\n{line['text']}\n")

    with pytest.raises(LitAsrError, match="needs task.output_dir"):
        infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={wav.parent}", "output_format=srt"))
    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={wav.parent}", "output_format=srt",
                         f"task.output_dir={tmp_path / 'subs'}"))
    assert len(list((tmp_path / "subs").glob("*.srt"))) == len(list(wav.parent.glob("*.wav")))
    with pytest.raises(LitAsrError, match="output_format=doc is not known"):
        infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={wav}", "output_format=doc"))


def test_srt_time():
    assert srt_time(0) == "00:00:00,000" and srt_time(3725.0456) == "01:02:05,046"
