"""Shared helpers: timing (median of repeats), hardware and load, memory peaks, realistic durations, config."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from lit_asr.data.manifest import read_manifest

# Durations (s) used when no manifest is at hand: the spread of the espeak-ng demo corpus (mean about 2.2 s).
FALLBACK_DURATIONS = (1.2, 1.5, 1.7, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.6, 2.8, 3.1, 3.5)


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(fn: Callable[[], object], repeats: int, warmup: int = 1,
                 device: torch.device = torch.device("cpu")) -> dict[str, float | list[float]]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; median, min and all wall-clock seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (None: unchanged), then restore the previous count."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other jobs share this machine)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device), "gpu": None,
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def reset_peak_rss() -> None:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process, where Linux allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """Peak resident memory since the last reset (VmHWM), else since start (getrusage), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def manifest_durations(path: str | Path | None) -> tuple[list[float], str]:
    """Durations of a manifest's utterances (files not checked), or the built-in spread when it is absent."""
    if path is not None and Path(path).is_file():
        entries, _ = read_manifest(path, check_files=False)
        if entries:
            return [e.duration for e in entries], str(path)
    return list(FALLBACK_DURATIONS) * 40, "built-in spread (no manifest)"


def chars_per_second(path: str | Path | None) -> float:
    """Transcript characters per audio second in a manifest (4.0 without one), for realistic label lengths."""
    if path is not None and Path(path).is_file():
        entries, _ = read_manifest(path, check_files=False)
        seconds = sum(e.duration for e in entries)
        if seconds > 0:
            return sum(len(e.text.replace(" ", "")) for e in entries) / seconds
    return 4.0


def compose_config(conf_dir: str | Path, overrides: list[str]) -> DictConfig:
    """The project's Hydra config, composed as run.py would (without the Hydra runtime)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(conf_dir).resolve()), version_base="1.3"):
        return compose("config", overrides=overrides)


def summarise(values: list[float]) -> dict[str, float]:
    """Median, mean and percentiles of a list of numbers."""
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "mean": float(arr.mean()), "p90": float(np.percentile(arr, 90)),
            "max": float(arr.max())}
