"""Tasks: each is a function of the composed config. ``dispatch`` prints user errors as one line."""

from __future__ import annotations

import importlib
import logging
import sys

from omegaconf import DictConfig, OmegaConf

from lit_asr.errors import LitAsrError

log = logging.getLogger("lit_asr")

TASKS = {"train": "lit_asr.tasks.train", "eval": "lit_asr.tasks.evaluate",
         "infer": "lit_asr.tasks.infer", "export": "lit_asr.tasks.export"}


def print_config(cfg: DictConfig) -> None:
    """Log the resolved configuration, as MASR does at start-up."""
    log.info("----------- configuration -----------\n%s-------------------------------------",
             OmegaConf.to_yaml(cfg, resolve=True))


def dispatch(cfg: DictConfig) -> float | None:
    """Run ``cfg.task.name``; a LitAsrError becomes ``error: ...`` on stderr and exit status 2."""
    name = cfg.task.name
    if name not in TASKS:
        print(f"error: unknown task {name!r}; choose one of {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(2)
    try:
        from pytorch_lightning.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            print_config(cfg)
        return importlib.import_module(TASKS[name]).run(cfg)
    except LitAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
