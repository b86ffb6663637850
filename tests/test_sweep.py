"""Decoder sweeps through Hydra multirun: every job's result.json lands in summary.tsv/.md, best CER first."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_asr.callbacks.sweep_summary import collect, write_tables
from tiny_checkpoint import ROOT, tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_two_by_two_sweep_writes_a_sorted_summary(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "task=eval", "decoder=beam_search", f"decoder.lang_model_path={tiny['lm']}", "decoder.alpha=0,2",
            "decoder.beta=0,4", "decoder.beam_size=10", "decoder.num_proc_bsearch=1",
            f"resume_model={tiny['checkpoint']}", f"test_manifest={tiny['test_manifest']}", "num_workers=0",
            f"task.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = _read_tsv(sweep / "summary.tsv")
    results = {str(p.parent.relative_to(sweep)): json.loads(p.read_text()) for p in sweep.rglob("result.json")}
    assert len(rows) == len(results) == 4
    cers = [float(r["cer"]) for r in rows]
    assert cers == sorted(cers) and cers[0] == min(r["cer"] for r in results.values())
    assert len(set(cers)) > 1, "alpha/beta should matter for this model and LM"
    assert {(r["alpha"], r["beta"]) for r in rows} == {("0", "0"), ("0", "4"), ("2", "0"), ("2", "4")}
    for row in rows:
        assert float(row["cer"]) == results[row["job"]]["cer"]
        assert row["overrides"] == f"decoder.alpha={row['alpha']} decoder.beta={row['beta']}"
    # the network runs for the first point only; the others read its log-probs from the cache
    assert sorted(r["cached"] for r in rows) == ["False", "True", "True", "True"]
    assert "| rank | cer |" in (sweep / "summary.md").read_text(encoding="utf-8")
    best = rows[0]
    assert f"best: alpha={best['alpha']} beta={best['beta']} beam_size=10" in proc.stdout
    assert "vs greedy CER" in proc.stdout and "read the cache" in proc.stdout


def _result(job_dir: Path, cer: float, alpha: float, mtime: float | None = None) -> None:
    job_dir.mkdir(parents=True)
    result = {"cer": cer, "greedy_cer": 0.5, "decoder": {"_target_": "x.BeamSearchDecoder", "alpha": alpha,
                                                          "beta": 0.0, "beam_size": 5},
              "cached": alpha != 0.0, "model_seconds": 1.0, "decoder_setup_seconds": 0.1, "decode_seconds": 0.2}
    (job_dir / "result.json").write_text(json.dumps(result))
    if mtime is not None:
        os.utime(job_dir / "result.json", (mtime, mtime))


def test_summary_ignores_stale_jobs_and_keeps_job_order_on_ties(tmp_path):
    start = time.time()
    _result(tmp_path / "0", 0.3, 0.0)
    _result(tmp_path / "10", 0.2, 2.0)
    _result(tmp_path / "2", 0.2, 1.0)
    _result(tmp_path / "3", 0.0, 3.0, mtime=start - 3600)  # left by an earlier sweep into the same folder
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "result.json").write_text("{not json")  # a job killed while writing
    rows = collect(tmp_path, since=start - 1)
    assert [r["job"] for r in rows] == ["2", "10", "0"] and [r["rank"] for r in rows] == [1, 2, 3]
    tsv, md = write_tables(rows, tmp_path)
    assert [r["alpha"] for r in _read_tsv(tsv)] == ["1.0", "2.0", "0.0"]
    text = md.read_text()
    assert "best: alpha=1 beta=0 beam_size=5 (BeamSearchDecoder, job 2): CER 0.2000 vs greedy CER 0.5000" in text
    assert "the network ran 1x (model 1.00 s), 2 points read the cache" in text
