"""Tasks: each is a function of the composed config. ``dispatch`` prints user errors as one line."""

from __future__ import annotations

import importlib
import logging
import sys

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_asr.errors import LitAsrError, first_line
from lit_asr.utils.config_check import check_config

log = logging.getLogger("lit_asr")

TASKS = {"train": "lit_asr.tasks.train", "eval": "lit_asr.tasks.evaluate",
         "infer": "lit_asr.tasks.infer", "export": "lit_asr.tasks.export", "serve": "lit_asr.tasks.serve",
         "average": "lit_asr.tasks.average"}


def print_config(cfg: DictConfig) -> None:
    """Log the resolved configuration, as MASR does at start-up."""
    log.info("----------- configuration -----------\n%s-------------------------------------",
             OmegaConf.to_yaml(cfg, resolve=True))


def dispatch(cfg: DictConfig) -> float | None:
    """Run ``cfg.task.name``; a LitAsrError or a bad config value becomes ``error: ...`` on stderr, exit status 2.

    The config is checked first (types, ranges, input files), before anything heavy is imported or loaded.
    """
    name = cfg.task.name
    if name not in TASKS:
        print(f"error: unknown task {name!r}; choose one of {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(2)
    try:
        try:
            OmegaConf.to_container(cfg, resolve=True)  # every ${...} resolves, before any work
        except OmegaConfBaseException as exc:
            raise LitAsrError(f"invalid config: {first_line(exc, keep_all=True)}") from None
        check_config(cfg)
        from pytorch_lightning.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            print_config(cfg)
        return importlib.import_module(TASKS[name]).run(cfg)
    except LitAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except InstantiationException as exc:
        # A config value that its target (model, optimizer, trainer, callback ...) rejects.
        print(f"error: invalid config: {first_line(exc, keep_all=True)}", file=sys.stderr)
        sys.exit(2)
