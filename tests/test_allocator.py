"""run.py's allocator: which one a command asks for, the environment it re-executes with, and that it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lit_asr.utils.allocator import library_path, preload_env, requested_allocator

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "config.yaml"


def test_the_command_line_wins_over_the_config_default(tmp_path):
    assert requested_allocator([], CONFIG) == "tcmalloc"
    assert requested_allocator(["task=eval", "allocator=system"], CONFIG) == "system"
    assert requested_allocator(["allocator=jemalloc", "++allocator=system"], CONFIG) == "system"
    (tmp_path / "c.yaml").write_text("allocator: null\n")
    assert requested_allocator([], tmp_path / "c.yaml") == "system"


def test_preload_env_prepends_the_library_once():
    env = preload_env("tcmalloc", {"LD_PRELOAD": "/x/other.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"].split() == [library_path("tcmalloc"), "/x/other.so"] and env["PATH"] == "/bin"
    assert preload_env("tcmalloc", env) is None  # the re-executed process does not restart again
    assert preload_env("system", {}) is None
    with pytest.raises(ValueError, match="allocator=tcmaloc: expected one of system, tcmalloc, jemalloc"):
        preload_env("tcmaloc", {})


def test_missing_library_warns_and_keeps_the_system_allocator(monkeypatch, capsys):
    monkeypatch.setattr("lit_asr.utils.allocator.library_path", lambda name: None)
    assert preload_env("jemalloc", {}) is None
    assert "apt-get install libjemalloc2" in capsys.readouterr().err


def _loaded_allocators(tmp_path: Path, *overrides: str) -> str:
    """Run a script that starts as run.py does and prints which allocator libraries its process has mapped."""
    script = tmp_path / "entry.py"
    script.write_text("from pathlib import Path\n"
                      "from lit_asr.utils.allocator import reexec_with_allocator\n"
                      f"reexec_with_allocator(Path({str(CONFIG)!r}))\n"
                      "print(open('/proc/self/maps').read())\n")
    out = subprocess.run([sys.executable, str(script), *overrides], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return " ".join(name for name in ("jemalloc", "tcmalloc") if name in out)


@pytest.mark.skipif(library_path("tcmalloc") is None, reason="libtcmalloc-minimal4 is not installed")
def test_the_entry_point_restarts_on_the_configured_allocator(tmp_path):
    assert _loaded_allocators(tmp_path) == "tcmalloc"
    assert _loaded_allocators(tmp_path, "allocator=system") == ""
