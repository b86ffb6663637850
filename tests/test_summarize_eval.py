"""scripts/summarize_eval.py: the table of eval runs, and the best point of a sweep (what `make eval` tests at)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lit_asr.callbacks.sweep_summary import collect, write_tables

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "summarize_eval.py"


def _result(run_dir: Path, cer: float, alpha: float, beta: float, manifest: str) -> Path:
    run_dir.mkdir(parents=True)
    result = {"manifest": manifest, "utterances": 3, "cer": cer, "greedy_cer": 0.5, "decode_seconds": 1.0,
              "decode_rtf": 0.01, "decoder": {"_target_": "x.BeamSearchDecoder", "alpha": alpha, "beta": beta,
                                              "beam_size": 5}}
    (run_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return run_dir


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_best_point_of_a_sweep_and_the_table(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (cer, alpha, beta) in enumerate([(0.30, 0.5, 1.0), (0.21, 1.5, 2.0), (0.25, 1.0, 3.0)]):
        _result(sweep / str(job), cer, alpha, beta, "dataset/manifest.dev")
    write_tables(collect(sweep), sweep)
    best = _cli("--best", str(sweep))
    assert best.returncode == 0, best.stderr
    assert best.stdout.splitlines()[0] == "decoder.alpha=1.5 decoder.beta=2.0"

    clean = _result(tmp_path / "beam", 0.2, 1.5, 2.0, "dataset/manifest.test")
    degraded = _result(tmp_path / "beam_degraded", 0.4, 1.5, 2.0, "dataset/manifest.test_degraded")
    table = _cli(str(clean), str(degraded))
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()[1:3]
    assert rows[0].startswith("manifest.test ") and " 0.2000 " in rows[0] and " 0.5000 " in rows[0]
    assert rows[1].startswith("manifest.test_degraded ") and " 0.4000 " in rows[1]


def test_best_without_a_sweep_is_a_one_line_error(tmp_path):
    result = _cli("--best", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: no summary.tsv")
    assert "Traceback" not in result.stderr
