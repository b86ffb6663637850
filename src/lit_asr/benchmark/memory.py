"""Memory of a real training run: peak and per-epoch resident memory of the trainer and its loader workers.

Runs a command (e.g. ``run.py experiment=demo ...``) as a child process, samples ``/proc/<pid>/smaps_rollup``
of it and of every process below it, and cuts the samples into epochs at the MASR-style ``Test epoch: N``
console lines. For workers the figure that matters is *private* memory (pages only that process holds): a
forked worker's RSS also counts every page it shares with the trainer.

    python -m lit_asr.benchmark.memory -- python run.py experiment=demo num_epoch=2 ...
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from lit_asr.data.manifest import read_manifest, write_manifest

_EPOCH_LINE = re.compile(r"Test epoch: (\d+)")
_FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "private", "Private_Dirty": "private"}


def memory_of(pid: int) -> dict[str, int] | None:
    """Resident, proportional and private memory of ``pid`` in bytes; None once it has gone."""
    out = {"rss": 0, "pss": 0, "private": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in _FIELDS:
                    out[_FIELDS[name]] += int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class _Sampler(threading.Thread):
    """Samples the main process and its descendants every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[dict] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            main = memory_of(self.pid)
            if main is not None:
                workers = {p: m for p in descendants(self.pid) if (m := memory_of(p)) is not None}
                self.samples.append({"t": time.monotonic(), "main": main, "workers": workers})
            self.stopped.wait(self.interval)


def _peak(samples: list[dict]) -> dict:
    if not samples:
        return {}
    workers = [w for s in samples for w in s["workers"].values()]
    return {"main_rss_mb": max(s["main"]["rss"] for s in samples) / 2**20,
            "main_private_mb": max(s["main"]["private"] for s in samples) / 2**20,
            "worker_private_mb": max((w["private"] for w in workers), default=0) / 2**20,
            "worker_rss_mb": max((w["rss"] for w in workers), default=0) / 2**20,
            "workers_seen": len({p for s in samples for p in s["workers"]})}


def record_training_memory(command: Sequence[str], interval: float = 0.5, log_path: Path | None = None,
                           env: dict[str, str] | None = None) -> dict:
    """Run ``command``; its peak memory and, per epoch (ended by a ``Test epoch: N`` line), the peaks within."""
    t0 = time.monotonic()
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, bufsize=1)
    sampler = _Sampler(proc.pid, interval)
    sampler.start()
    marks: list[tuple[int, float]] = []
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    try:
        for line in proc.stdout:
            if log:
                log.write(line)
            if (m := _EPOCH_LINE.search(line)) is not None:
                marks.append((int(m.group(1)), time.monotonic()))
        returncode = proc.wait()
    finally:
        sampler.stopped.set()
        sampler.join()
        if log:
            log.close()
    epochs, start = [], t0
    for epoch, end in marks:
        epochs.append({"epoch": epoch, **_peak([s for s in sampler.samples if start <= s["t"] <= end])})
        start = end
    return {"command": list(command), "returncode": returncode, "wall_s": time.monotonic() - t0,
            "interval_s": interval, "peak": _peak(sampler.samples), "epochs": epochs}


def training_command(cfg: DictConfig, workdir: Path, utterances: int, test_utterances: int, epochs: int,
                     extra: Sequence[str] = ()) -> list[str]:
    """``run.py experiment=demo`` on the first utterances of ``cfg``'s manifests, everything written to
    ``workdir`` (a real training run: Lightning loop, loader workers, validation, checkpoints)."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for split, key, n in (("train", "train_manifest", utterances), ("test", "test_manifest", test_utterances)):
        entries, _ = read_manifest(cfg[key], cfg.min_duration, cfg.max_duration)
        manifests[key] = workdir / f"manifest.{split}"
        write_manifest(manifests[key], entries[:n])
    root = Path(__file__).resolve().parents[3]
    return [sys.executable, str(root / "run.py"), "experiment=demo", f"num_epoch={epochs}", "logger=none",
            *(f"{k}={v}" for k, v in manifests.items()), f"dataset_vocab={Path(cfg.dataset_vocab).resolve()}",
            f"mean_std_path={Path(cfg.mean_std_path).resolve()}", f"save_model_path={workdir / 'models'}",
            f"hydra.run.dir={workdir / 'hydra'}", *extra]


def main(argv: list[str] | None = None) -> int:
    """``python -m lit_asr.benchmark.memory [--json FILE] -- COMMAND ...``: print the figures as JSON (with
    ``--json``, also write them to FILE and the command's output beside it, FILE with suffix ``.log``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = None
    if argv[:1] == ["--json"]:
        out, argv = Path(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m lit_asr.benchmark.memory [--json FILE] -- COMMAND ...", file=sys.stderr)
        return 2
    result = record_training_memory(argv, log_path=out.with_suffix(".log") if out else None)
    text = json.dumps(result, indent=1)
    if out:
        out.write_text(text + "\n")
    print(text)
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
