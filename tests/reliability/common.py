"""Helpers of the reliability tests: run the CLIs as a user would, and read what they report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lit_asr.tasks.train import build_parts  # noqa: F401 - re-exported for the reliability tests
from test_checkpoints import FAST
from tiny_data import overrides

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], cwd: Path, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python <args>`` from ``cwd`` (a script path first), output captured as text."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a failed run; fails unless it exited with status 2 and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def write_jsonl(path: Path, lines: list) -> Path:
    """A manifest: dicts become JSON lines, strings are written as they are (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def manifest_items(path: Path) -> list[dict]:
    """The JSON lines of a manifest."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# run.py's fast settings from test_checkpoints (a network that takes well under a second per step), as overrides.
FAST_OVERRIDES = [f"{k}={v}" for k, v in FAST.items()]


def compose_config(tiny: dict, tmp: Path, *extra: str) -> DictConfig:
    """run.py's composed config for the tiny data with the fast settings, outputs under ``tmp``."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[o for o in overrides(tiny, tmp) if not o.startswith("hydra.")]
                       + FAST_OVERRIDES + list(extra))


