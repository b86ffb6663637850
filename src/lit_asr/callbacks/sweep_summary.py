"""Hydra callback: after a multirun, tabulate every job's ``result.json`` (best CER first) in the sweep directory.

Registered under ``hydra.callbacks`` in ``conf/config.yaml``; single runs and multiruns whose jobs write no
``result.json`` (e.g. training) are left alone. It reads only JSON, so it works whichever launcher ran the jobs.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = ["rank", "cer", "greedy_cer", "alpha", "beta", "beam_size", "decoder", "model_seconds",
           "decoder_setup_seconds", "decode_seconds", "cached", "job", "overrides"]


def _job_row(result_file: Path, sweep_dir: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not isinstance(result.get("cer"), (int, float)):
        return None  # not an eval result: a summary of the others is still worth having
    decoder = result.get("decoder") or {}
    overrides_file = result_file.parent / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) if overrides_file.is_file() else []
    return {"cer": result["cer"], "greedy_cer": result.get("greedy_cer"), "alpha": decoder.get("alpha"),
            "beta": decoder.get("beta"), "beam_size": decoder.get("beam_size"),
            "decoder": str(decoder.get("_target_", "")).rsplit(".", 1)[-1],
            "model_seconds": result.get("model_seconds"), "decoder_setup_seconds": result.get("decoder_setup_seconds"),
            "decode_seconds": result.get("decode_seconds"), "cached": result.get("cached"),
            "job": str(result_file.parent.relative_to(sweep_dir)), "overrides": list(overrides or [])}


def collect(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per ``result.json`` under ``sweep_dir`` written after ``since`` (epoch seconds), best CER first."""
    files = [f for f in sweep_dir.rglob("result.json") if f.stat().st_mtime >= since]
    rows = [row for row in (_job_row(f, sweep_dir) for f in files) if row is not None]
    # an override every job shares says nothing about the point: show only what the sweep varied
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in common)
    # ties (common on a flat CER surface) keep the jobs' order, so the first point reached wins
    rows.sort(key=lambda r: (r["cer"], _job_order(r["job"])))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _job_order(job: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in Path(job).parts)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """``summary.tsv`` (raw values) and ``summary.md`` (a Markdown table) in ``out_dir``."""
    tsv, md = out_dir / "summary.tsv", out_dir / "summary.md"
    lines = ["\t".join(COLUMNS)] + ["\t".join("" if r[c] is None else str(r[c]) for c in COLUMNS) for r in rows]
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    md.write_text("\n".join(["# Sweep summary", "", *summary_lines(rows), "", *table]) + "\n", encoding="utf-8")
    return tsv, md


def _median(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    return f"{statistics.median(values):.2f}" if values else "-"


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The best point against greedy decoding, and what the first point cost against each further one."""
    best = rows[0]
    lines = [f"best: alpha={_cell(best['alpha'])} beta={_cell(best['beta'])} beam_size={_cell(best['beam_size'])} "
             f"({best['decoder']}, job {best['job']}): CER {best['cer']:.4f}"
             + (f" vs greedy CER {best['greedy_cer']:.4f}" if best["greedy_cer"] is not None else "")]
    computed = [r for r in rows if r["cached"] is False]
    reused = [r for r in rows if r["cached"]]
    if computed or reused:
        ran = f"the network ran {len(computed)}x (model {_median(computed, 'model_seconds')} s)"
        parts = [ran if computed else "the network never ran",
                 f"{len(reused)} points read the cache (model {_median(reused, 'model_seconds')} s)"]
        lines.append(f"cost per point: {', '.join(parts)}; median over all points: decoder setup "
                     f"{_median(rows, 'decoder_setup_seconds')} s, decode {_median(rows, 'decode_seconds')} s")
    return lines


class SweepSummary(Callback):
    """Writes ``summary.tsv``/``summary.md`` into the multirun directory and prints the best point."""

    def __init__(self, show: int = 10) -> None:
        self.show = show
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # result.json files older than this belong to an earlier sweep into the same directory
        self.started = time.time() - 1.0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir, since=self.started)
        if not rows:
            return
        tsv, md = write_tables(rows, sweep_dir)
        shown = ["rank", "cer", "alpha", "beta", "beam_size", "decode_seconds", "model_seconds", "job"]
        print(f"Sweep summary: {len(rows)} points, best first (all of it in {tsv} and {md.name})")
        print("  " + "\t".join(shown))
        for row in rows[: self.show]:
            print("  " + "\t".join(_cell(row[c]) for c in shown))
        for line in summary_lines(rows):
            print(line)
