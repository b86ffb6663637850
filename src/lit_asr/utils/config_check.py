"""Start-up checks of the composed config: value types and ranges of the top-level keys, and the files a task needs.

They run before anything is loaded (no torch import), so a typo fails in a second with one line naming the key,
instead of minutes later deep inside Lightning. Keys a custom config does not have are not checked.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig

from lit_asr.errors import LitAsrError

# key -> (kind, lowest allowed value, whether the lowest value itself is allowed)
_NUMBERS = {
    "batch_size": ("int", 1, True),
    "num_epoch": ("int", 1, True),
    "accum_grad": ("int", 1, True),
    "avg_num": ("int", 1, True),
    "num_workers": ("int", 0, True),
    "sortagrad_epochs": ("int", 0, True),
    "malloc_mmap_threshold": ("int", 0, False),
    "seed": ("int", -math.inf, True),
    "min_duration": ("number", 0.0, True),
    "max_duration": ("number", 0.0, False),
    "duration_tolerance": ("number", 0.0, True),
    "max_batch_duration": ("number", 0.0, False),
    "learning_rate": ("number", 0.0, False),
    "weight_decay": ("number", 0.0, True),
}
# null switches the bound or the check off
_OPTIONAL = {"max_batch_duration", "duration_tolerance", "malloc_mmap_threshold"}

PREPARE = "or run scripts/prepare_data.py first"
# Files each task reads: config key -> (what it is, what to do when it is missing).
_TASK_FILES = {
    "train": {"train_manifest": ("manifest", PREPARE), "test_manifest": ("manifest", PREPARE),
              "dev_manifest": ("manifest", "or dev_manifest=null for the one beside test_manifest"),
              "dataset_vocab": ("vocabulary file", PREPARE), "mean_std_path": ("normalisation file", PREPARE),
              "noise_manifest": ("noise manifest", "or noise_manifest=null for synthetic noise")},
    "eval": {"test_manifest": ("manifest", PREPARE)},
}
_LM_TASKS = ("eval", "infer")


def _number(key: str, value: object) -> None:
    kind, low, inclusive = _NUMBERS[key]
    if value is None and key in _OPTIONAL:
        return
    ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise LitAsrError(f"{key}={value!r} must be {'a whole number' if kind == 'int' else 'a number'}")
    if value < low or (value == low and not inclusive) or (isinstance(value, float) and math.isnan(value)):
        bound = f"at least {low}" if inclusive else f"above {low}"
        raise LitAsrError(f"{key}={value} must be {bound}")


def _require_file(key: str, value: object, what: str, advice: str) -> None:
    if value is None or value == "":
        return
    if Path(str(value)).is_dir():
        raise LitAsrError(f"{what} {value} is a folder, not a file (set {key}=PATH to the file, {advice})")
    if not Path(str(value)).is_file():
        raise LitAsrError(f"{what} not found: {value} (set {key}=PATH, {advice})")


def _writable_folder(key: str, folder: Path) -> None:
    """The folder exists as a writable directory, or can be created (every existing ancestor is one)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise LitAsrError(f"cannot write checkpoints to {folder}: {probe} is not a folder (set {key}=PATH)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LitAsrError(f"cannot write checkpoints to {folder}: {probe} is not writable (set {key}=PATH)")


def _check_attention_model(cfg: DictConfig) -> None:
    """Sizes of a Conformer-style model (keys d_model, num_heads, subsampling) that its layers cannot take."""
    model = cfg.model
    if model.d_model % model.num_heads:
        raise LitAsrError(f"model.num_heads={model.num_heads} must divide model.d_model={model.d_model}")
    if "conv_kernel" in model and model.conv_kernel % 2 == 0:
        raise LitAsrError(f"model.conv_kernel={model.conv_kernel} must be odd")
    # only train builds a model from cfg.model; torch is imported by that task a moment later anyway
    from lit_asr.models.components.subsampling import LAYERS, receptive_field

    if model.subsampling not in LAYERS:
        raise LitAsrError(f"model.subsampling={model.subsampling} must be one of {', '.join(map(str, LAYERS))}")
    needed = receptive_field(model.subsampling)
    features = cfg.get("features") or {}
    if cfg.get("min_duration") and {"sample_rate", "window_ms", "stride_ms"} <= set(features):
        rate = features.sample_rate
        window, hop = round(rate * features.window_ms / 1000), round(rate * features.stride_ms / 1000)
        frames = max(0, (int(cfg.min_duration * rate) - window) // hop + 1)
        if frames < needed:
            shortest = ((needed - 1) * hop + window) / rate
            raise LitAsrError(f"model.subsampling={model.subsampling} needs {needed} feature frames for one output "
                              f"frame, but min_duration={cfg.min_duration} allows utterances of {frames}: raise "
                              f"min_duration to at least {shortest:g} or lower model.subsampling")


def check_config(cfg: DictConfig) -> None:
    """Raise LitAsrError, naming the key, for a value of the wrong type or range or a missing input file."""
    for key in _NUMBERS:
        if key in cfg:
            _number(key, cfg[key])
    if "min_duration" in cfg and "max_duration" in cfg and cfg.min_duration > cfg.max_duration:
        raise LitAsrError(f"min_duration={cfg.min_duration} is above max_duration={cfg.max_duration}")
    if cfg.get("max_batch_duration") is not None and "max_duration" in cfg and \
            cfg.max_batch_duration < cfg.max_duration:
        # A batch holds at least one utterance, so a longer one would break the memory bound on its own.
        raise LitAsrError(f"max_batch_duration={cfg.max_batch_duration} is below max_duration={cfg.max_duration}: "
                          "raise max_batch_duration or lower max_duration")
    task = cfg.task.name if "task" in cfg and "name" in cfg.task else None
    if task == "train" and cfg.get("model") is not None and {"d_model", "num_heads", "subsampling"} <= set(cfg.model):
        _check_attention_model(cfg)
    for key, (what, advice) in _TASK_FILES.get(task, {}).items():
        if key == "train_manifest" and cfg.get("train_shards"):
            continue  # shards replace the train manifest
        if key in cfg:
            _require_file(key, cfg[key], what, advice)
    if task == "train" and cfg.get("train_shards"):
        _require_file("train_shards", str(Path(str(cfg.train_shards)) / "index.json"), "shard index",
                      "or write shards with prepare_data.py ... --shards DIR")
    tests_with_decoder = task == "train" and cfg.get("eval_every_epoch", True)
    if (task in _LM_TASKS or tests_with_decoder) and cfg.get("decoder") is not None:
        _require_file("decoder.lang_model_path", cfg.decoder.get("lang_model_path"), "language model",
                      "build one with scripts/build_lm.py, or decoder.lang_model_path=null for none")
    if task == "train" and "save_model_path" in cfg:
        _writable_folder("save_model_path", Path(str(cfg.save_model_path)) / str(cfg.get("use_model", "")))
