"""VisualDL logging: a Lightning Logger over ``visualdl.LogWriter`` and a callback for decoded test examples.

View with ``visualdl --logdir=log --host=0.0.0.0 --port 8040 --disable-telemetry --language en``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only
from visualdl import LogWriter

# hparams lists longer than this (vocabulary, mean/std) are recorded by length: the values would swamp the table.
MAX_LIST_ITEMS = 8


def flatten_hparams(params: Mapping[str, Any], prefix: str = "") -> dict[str, int | float | str]:
    """Nested hparams as ``{"model/rnn_size": 256, ...}`` with values VisualDL's hparams table accepts."""
    flat: dict[str, int | float | str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=f"{name}/"))
        elif isinstance(value, (list, tuple)) and len(value) > MAX_LIST_ITEMS:
            flat[f"{name}/len"] = len(value)
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class VisualDLLogger(Logger):
    """Scalars, hyperparameters and text in VisualDL record files under ``logdir``, written by rank zero only.

    VisualDL shows only the newest record file of a folder, so a resumed run (``resume = True``, set by the
    training task before fitting) appends to the newest file instead of hiding the run so far behind a new one.
    """

    def __init__(self, logdir: str = "log", flush_secs: int = 30, metrics: tuple[str, ...] = ("val/cer", "val/loss")):
        super().__init__()
        self._logdir = str(logdir)
        self.flush_secs = flush_secs
        self.metrics = list(metrics)  # shown against the hyperparameters in VisualDL's hparams view
        self.resume = False
        self._writer: LogWriter | None = None
        self._file_name = ""  # kept after finalize, so a later test/fit on this logger continues the same file

    @property
    def name(self) -> str:
        return "visualdl"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return self._logdir

    @property
    def log_dir(self) -> str:
        return self._logdir

    def _latest_file(self) -> str:
        files = sorted(Path(self._logdir).glob("vdlrecords.*.log")) if self.resume else []
        return files[-1].name if files else ""

    @property
    @rank_zero_experiment
    def experiment(self) -> LogWriter:
        """The LogWriter (created on first use, so ``resume`` can still be set after construction)."""
        if self._writer is None:
            self._writer = LogWriter(logdir=self._logdir, file_name=self._file_name or self._latest_file(),
                                     flush_secs=self.flush_secs)
            self._file_name = Path(self._writer.file_name).name
        return self._writer

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Each metric as a scalar series named by its tag (``train/loss``, ``val/cer``, ...)."""
        for tag, value in metrics.items():
            self.experiment.add_scalar(tag=tag, value=float(value), step=int(step or 0))

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Any, *args: Any, **kwargs: Any) -> None:
        """One hparams record (flattened; long lists by length) for VisualDL's run-comparison view."""
        params = params if isinstance(params, Mapping) else vars(params)
        self.experiment.add_hparams(flatten_hparams(params), self.metrics)

    @rank_zero_only
    def log_text(self, tag: str, text: str, step: int) -> None:
        """A text record, e.g. decoded examples."""
        self.experiment.add_text(tag=tag, text_string=text, step=step)

    @rank_zero_only
    def save(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class VisualDLExamples(pl.Callback):
    """After each validation ("test epoch"), writes the module's ``val_examples`` (reference vs hypothesis) as text."""

    def __init__(self, tag: str = "val/examples"):
        self.tag = tag

    @rank_zero_only
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        examples = getattr(pl_module, "val_examples", [])
        if trainer.sanity_checking or not examples:
            return
        text = "\n".join(f"{i}. ref: {ref}\n   hyp: {hyp}" for i, (ref, hyp) in enumerate(examples, 1))
        for logger in trainer.loggers:
            if isinstance(logger, VisualDLLogger):
                logger.log_text(self.tag, text, step=trainer.global_step)
