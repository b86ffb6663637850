"""What the serve tests share: settings from conf/serve/default.yaml with overrides, and the tiny speech files."""

from __future__ import annotations

import resource
from pathlib import Path

from omegaconf import OmegaConf

from lit_asr.serve.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]


def serve_settings(**overrides) -> ServeSettings:
    """The shipped defaults with ``overrides``, bound to loopback whatever the defaults say."""
    cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "serve" / "default.yaml")),
           "host": "127.0.0.1", "log_level": "warning", **overrides}
    return ServeSettings.from_config(cfg)


def speech_files(tiny: dict[str, Path]) -> list[Path]:
    """The tiny dataset's spoken clauses (16 kHz mono wav), in a fixed order."""
    return sorted((tiny["root"] / "wav").glob("*.wav"))


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
