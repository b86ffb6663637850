"""Config mistakes fail at start-up, before anything is loaded or trained, with one line naming the key or file.

Each case is a real ``run.py`` process; check_config is also exercised directly for the remaining keys.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lit_asr.errors import LitAsrError
from lit_asr.utils.config_check import check_config
from test_checkpoints import run_py

from .common import ROOT, compose_config, error_line, run_cli


def run(tiny: dict, tmp: Path, override: str) -> subprocess.CompletedProcess:
    """run.py (tiny data, fast settings, outputs under ``tmp``) with one more ``key=value`` override."""
    key, value = override.split("=", 1)
    return subprocess.run(run_py(tiny, tmp, **{key: value}), cwd=tmp, capture_output=True, text=True, timeout=300)


def assert_no_work(tmp: Path, proc) -> None:
    """Nothing was loaded, trained or written: the configuration was not even printed."""
    assert "configuration" not in proc.stdout and "Seed set" not in proc.stdout, proc.stdout[-2000:]
    assert not (tmp / "models").exists()


# (override, text the one-line error must contain)
START_UP_ERRORS = [
    ("batch_size=abc", "batch_size='abc' must be a whole number"),
    ("batch_size=0", "batch_size=0 must be at least 1"),
    ("num_workers=two", "num_workers='two' must be a whole number"),
    ("learning_rate=fast", "learning_rate='fast' must be a number"),
    ("num_epoch=1.5", "num_epoch=1.5 must be a whole number"),
    ("max_batch_duration=5", "max_batch_duration=5 is below max_duration=20.0"),
    ("min_duration=30", "min_duration=30 is above max_duration=20.0"),
    ("log_dir=${nope}", "invalid config: Interpolation key 'nope' not found; full_key: log_dir"),
]


@pytest.mark.parametrize("override, message", START_UP_ERRORS, ids=[o for o, _ in START_UP_ERRORS])
def test_wrong_type_or_range_fails_at_start_up(tiny, tmp_path, override, message):
    proc = run(tiny, tmp_path, override)
    assert message in error_line(proc)
    assert_no_work(tmp_path, proc)


@pytest.mark.parametrize("key, what", [("train_manifest", "manifest"), ("test_manifest", "manifest"),
                                       ("dataset_vocab", "vocabulary file"),
                                       ("mean_std_path", "normalisation file")])
def test_missing_input_file_fails_at_start_up(tiny, tmp_path, key, what):
    missing = tmp_path / "nowhere" / key
    proc = run(tiny, tmp_path, f"{key}={missing}")
    line = error_line(proc)
    assert line == (f"error: {what} not found: {missing} (set {key}=PATH, or run scripts/prepare_data.py first)")
    assert_no_work(tmp_path, proc)


def test_missing_language_model_fails_before_the_model_runs(tiny, tmp_path):
    missing = tmp_path / "lm.arpa"
    proc = run_cli([ROOT / "run.py", "task=eval", "decoder=beam_search", f"decoder.lang_model_path={missing}",
                    f"test_manifest={tiny['test_manifest']}", f"resume_model={tmp_path / 'some_model'}",
                    f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path)
    line = error_line(proc)
    assert line.startswith(f"error: language model not found: {missing} (set decoder.lang_model_path=PATH")
    assert "scripts/build_lm.py" in line
    assert "configuration" not in proc.stdout


def test_save_model_path_through_a_file_fails_at_start_up(tiny, tmp_path):
    (tmp_path / "models_file").write_text("not a folder")
    proc = run(tiny, tmp_path, f"save_model_path={tmp_path / 'models_file' / 'sub'}")
    line = error_line(proc)
    assert line == (f"error: cannot write checkpoints to {tmp_path / 'models_file' / 'sub' / 'deepspeech2'}: "
                    f"{tmp_path / 'models_file'} is not a folder (set save_model_path=PATH)")
    assert (tmp_path / "models_file").read_text() == "not a folder"


def test_value_a_component_rejects_is_one_line(tiny, tmp_path):
    # Not a top-level key: the model's own constructor rejects it (after start-up checks, before any training).
    proc = run(tiny, tmp_path, "model.rnn_size=abc")
    line = error_line(proc)
    assert line.startswith("error: invalid config: Error in call to target "
                           "'lit_asr.models.components.deepspeech2.DeepSpeech2'")
    assert "hidden_size should be of type int, got: str" in line
    assert not (tmp_path / "models").exists()


def test_unknown_key_is_refused_by_hydra(tiny, tmp_path):
    # Hydra composes the config before lit-asr runs, so this message is Hydra's own (several lines, no traceback).
    proc = run(tiny, tmp_path, "batch_szie=16")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "Could not override 'batch_szie'" in proc.stderr and "Key 'batch_szie' is not in struct" in proc.stderr
    assert_no_work(tmp_path, proc)


@pytest.mark.parametrize("extra, message", [
    (("weight_decay=-1",), "weight_decay=-1 must be at least 0.0"),
    (("max_duration=0",), "max_duration=0 must be above 0.0"),
    (("seed=true",), "seed=True must be a whole number"),
    (("sortagrad_epochs=one",), "sortagrad_epochs='one' must be a whole number"),
    (("noise_manifest=/nowhere/noise.json",), "noise manifest not found: /nowhere/noise.json (set noise_manifest=PATH, "
                                              "or noise_manifest=null for synthetic noise)"),
    (("task=infer", "decoder=beam_search", "decoder.lang_model_path=/nowhere/lm.arpa"),
     "language model not found: /nowhere/lm.arpa"),
])
def test_check_config_names_the_key(tiny, tmp_path, extra, message):
    with pytest.raises(LitAsrError) as err:
        check_config(compose_config(tiny, tmp_path, *extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_check_config_accepts_the_shipped_configs(tiny, tmp_path):
    check_config(compose_config(tiny, tmp_path))
    check_config(compose_config(tiny, tmp_path, "experiment=demo", "max_batch_duration=null"))
    check_config(compose_config(tiny, tmp_path, "task=eval", "decoder=beam_search", "decoder.lang_model_path=null"))
    check_config(compose_config(tiny, tmp_path, "task=export", "test_manifest=/nowhere"))  # export reads no manifest
