"""What the serve tests share: settings from conf/serve/default.yaml with overrides, and the tiny speech files."""

from __future__ import annotations

import resource
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lit_asr.inference.recognizer import Recognizer
from lit_asr.serve.settings import ServeSettings
from lit_asr.tasks.train import build_parts
from tiny_checkpoint import run_config

ROOT = Path(__file__).resolve().parents[1]


def serve_settings(**overrides) -> ServeSettings:
    """The shipped defaults with ``overrides``, bound to loopback whatever the defaults say."""
    cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "serve" / "default.yaml")),
           "host": "127.0.0.1", "log_level": "warning", **overrides}
    return ServeSettings.from_config(cfg)


def streaming_recognizer(tiny: dict[str, Path], tmp: Path) -> Recognizer:
    """A Recognizer over model=deepspeech2_streaming_small with the tiny dataset's vocabulary, random weights.

    As barely trained as the tiny checkpoint (one step at lr 1e-7), so it emits characters all the same.
    """
    cfg = run_config(tiny, tmp, "model=deepspeech2_streaming_small")
    torch.manual_seed(0)
    module, _ = build_parts(cfg)
    return Recognizer(module.eval(), device="cpu")


def speech_files(tiny: dict[str, Path]) -> list[Path]:
    """The tiny dataset's spoken clauses (16 kHz mono wav), in a fixed order."""
    return sorted((tiny["root"] / "wav").glob("*.wav"))


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
