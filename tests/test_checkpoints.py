"""Checkpoint folders: atomic replacement and recovery, names and rotation, resume rules, pretrained weights, eval.

The helpers at the top (a shared tiny dataset, a fast run.py command line) are used by the other training-ops
test modules too.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_asr.errors import LitAsrError
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.loading import load_pretrained_weights
from lit_asr.tasks.train import initialise_from
from lit_asr.utils import checkpoints as ckpt
from tiny_data import make_tiny_dataset, overrides

ROOT = Path(__file__).resolve().parents[1]
# A network small enough that a step takes well under a second on two cores; these tests are about the plumbing.
FAST = {"model.rnn_size": 32, "model.num_rnn_layers": 1, "model.conv_channels": "[8,8]", "augment": "none",
        "logger": "none", "callbacks.console.log_interval": 1}


def shared_tiny(tmp_path_factory) -> dict[str, Path]:
    """The tiny dataset, synthesised once per test session and only read afterwards."""
    root = tmp_path_factory.getbasetemp() / "tiny-ops"
    paths = {"train_manifest": root / "manifest.train", "test_manifest": root / "manifest.test",
             "dataset_vocab": root / "vocabulary.txt", "mean_std_path": root / "mean_std.npz"}
    return paths if paths["mean_std_path"].exists() else make_tiny_dataset(root)


def run_py(tiny: dict, tmp: Path, **extra) -> list[str]:
    """run.py with the tiny data and fast settings, every output under ``tmp``."""
    return [sys.executable, str(ROOT / "run.py"), *overrides(tiny, tmp, **{**FAST, **extra})]


def train(tiny: dict, tmp: Path, timeout: int = 300, **extra) -> subprocess.CompletedProcess:
    """Run training to completion (or failure) in a subprocess; on timeout kill it and any DDP ranks it started."""
    proc = subprocess.Popen(run_py(tiny, tmp, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"training did not finish within {timeout}s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def global_step(folder: Path) -> int:
    """The global step stored in a checkpoint folder (loaded the safe way)."""
    return torch.load(folder / ckpt.CHECKPOINT_FILE, map_location="cpu", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """Two epochs of 6 steps with a step checkpoint every 4 steps, keeping the newest 2."""
    tmp = tmp_path_factory.mktemp("trained")
    proc = train(tiny, tmp, num_epoch=2, **{"callbacks.step_checkpoints.every_n_train_steps": 4,
                                            "callbacks.step_checkpoints.save_top_k": 2})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc


def _copy_models(trained_dir: Path, tmp: Path) -> Path:
    shutil.copytree(trained_dir / "models", tmp / "models")
    return tmp / "models" / "deepspeech2"


# ---- atomic replacement, without training ----

def _fake_checkpoint(folder: Path, content: bytes) -> None:
    folder.mkdir(parents=True)
    (folder / ckpt.CHECKPOINT_FILE).write_bytes(content)


def test_commit_replaces_and_leaves_nothing_behind(tmp_path):
    last = tmp_path / "last_model"
    _fake_checkpoint(last, b"old")
    staged = ckpt.staging_dir(last)
    (staged / ckpt.CHECKPOINT_FILE).write_bytes(b"new")
    ckpt.commit(staged, last)
    assert (last / ckpt.CHECKPOINT_FILE).read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_model"]
    assert ckpt.remove(last) and not last.exists() and not ckpt.remove(last)


def test_crash_between_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    last = tmp_path / "last_model"
    _fake_checkpoint(last, b"old")
    staged = ckpt.staging_dir(last)
    (staged / ckpt.CHECKPOINT_FILE).write_bytes(b"new")
    real_rename, calls = os.rename, []

    def rename_then_die(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the process "dies" after moving the old folder aside
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        ckpt.commit(staged, last)
    monkeypatch.undo()
    assert not last.exists()
    found = ckpt.find_checkpoint(last)  # readers fall back to the aside copy
    assert found == tmp_path / "last_model.old" / ckpt.CHECKPOINT_FILE and found.read_bytes() == b"old"
    assert ckpt.checkpoint_file(last) == found
    assert ckpt.tidy(tmp_path) == ["restored last_model from last_model.old", "removed unfinished last_model.tmp"]
    assert (last / ckpt.CHECKPOINT_FILE).read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_model"]


def test_tidy_removes_leftovers_but_keeps_complete_checkpoints(tmp_path):
    _fake_checkpoint(tmp_path / "epoch_1", b"1")
    _fake_checkpoint(tmp_path / "epoch_1.old", b"0")  # killed after the new one was in place
    _fake_checkpoint(tmp_path / "step_8.del", b"8")  # killed while deleting
    (tmp_path / "step_12.tmp").mkdir()  # killed while writing
    assert sorted(ckpt.tidy(tmp_path)) == ["removed superseded epoch_1.old", "removed unfinished step_12.tmp",
                                           "removed unfinished step_8.del"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1"]
    with pytest.raises(LitAsrError, match="no checkpoint at"):
        ckpt.checkpoint_file(tmp_path / "step_8")


def test_resume_mismatch_names_what_differs():
    saved = {"vocabulary": ["a", "b"], "model": {"rnn_size": 32}, "feature_config": {"n_mels": 80}, "mean": [0.5],
             "std": [2.0]}
    assert ckpt.resume_mismatch(saved, dict(saved)) is None
    problem = ckpt.resume_mismatch(saved, {**saved, "vocabulary": ["a", "b", "c"], "model": {"rnn_size": 64}})
    assert problem == ("it was trained with a different vocabulary (2 tokens -> 3); "
                       "model config (rnn_size: 32 -> 64)")
    assert "not a lit-asr" in ckpt.resume_mismatch({"lr": 1}, saved)
    # other normalisation statistics (mean_std_path changed): the saved weights expect the old features
    assert ckpt.resume_mismatch(saved, {**saved, "mean": [0.25]}) == ("it was trained with a different feature mean "
                                                                       "(mean_std_path) (different values)")


# ---- a real two-epoch run ----

def test_epoch_step_best_and_last_folders(trained):
    tmp, proc = trained
    folder = tmp / "models" / "deepspeech2"
    names = sorted(p.name for p in folder.iterdir())
    # step_4 was rotated out (newest 2 kept); nothing half-written is left behind
    assert names == ["best_model", "epoch_1", "epoch_2", "last_model", "step_12", "step_8"]
    steps = {n: global_step(folder / n) for n in names}
    assert steps.pop("best_model") in (6, 12)
    assert steps == {"epoch_1": 6, "epoch_2": 12, "last_model": 12, "step_12": 12, "step_8": 8}
    assert "saved models/deepspeech2/epoch_2 (step 12)" in proc.stdout
    assert "removed models/deepspeech2/step_4" in proc.stdout
    # self-contained and plain: hparams carry what inference needs and load with weights_only=True
    hparams = torch.load(folder / "epoch_2" / "model.ckpt", weights_only=True)["hyper_parameters"]
    assert {"vocabulary", "feature_config", "mean", "std", "model"} <= set(hparams)


def test_eval_needs_only_the_checkpoint_folder(tiny, trained, tmp_path):
    trained_dir, _ = trained
    data = tmp_path / "data"
    shutil.copytree(Path(tiny["test_manifest"]).parent / "wav", data / "wav")
    manifest = data / "manifest.test"
    lines = Path(tiny["test_manifest"]).read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines]
    for item in items:
        item["audio_filepath"] = str(data / "wav" / Path(item["audio_filepath"]).name)
    manifest.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    run_dir = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "task=eval",
         f"resume_model={trained_dir / 'models' / 'deepspeech2' / 'best_model'}", f"test_manifest={manifest}",
         f"dataset_vocab={data / 'missing_vocabulary.txt'}", f"mean_std_path={data / 'missing_mean_std.npz'}",
         f"hydra.run.dir={run_dir}", "task.cache_dir=null", "num_workers=0"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "result.json").read_text())["utterances"] == len(items)


def test_resume_model_wins_over_last_model(tiny, trained, tmp_path):
    folder = _copy_models(trained[0], tmp_path)
    proc = train(tiny, tmp_path, num_epoch=2, resume_model=str(folder / "epoch_1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from models/deepspeech2/epoch_1 (epoch 1 done, step 6)" in proc.stdout
    assert global_step(folder / "last_model") == 12  # one more epoch of 6 steps, counted on from 6


def test_mismatched_vocabulary_is_a_one_line_error(tiny, trained, tmp_path):
    _copy_models(trained[0], tmp_path)
    vocab = tmp_path / "vocabulary.txt"
    vocab.write_text(Path(tiny["dataset_vocab"]).read_text(encoding="utf-8") + "龍\n", encoding="utf-8")
    proc = train(tiny, tmp_path, num_epoch=2, dataset_vocab=str(vocab))
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err[0].startswith("error: cannot resume from ") and "different vocabulary" in err[0]
    assert "delete " in err[0] and "last_model" in err[0] and "resume_model" in err[0]


def test_longer_run_than_the_resumed_schedule_is_a_clear_error(tiny, trained, tmp_path):
    _copy_models(trained[0], tmp_path)
    proc = train(tiny, tmp_path, num_epoch=3)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: the resumed learning-rate schedule covers 12 steps but this run needs 18")


def test_pretrained_model_across_vocabularies_copies_shared_token_rows(trained, caplog):
    source = trained[0] / "models" / "deepspeech2" / "epoch_2"
    saved = torch.load(source / "model.ckpt", weights_only=True)
    hparams = dict(saved["hyper_parameters"])
    old_tokens = hparams["vocabulary"]
    # Another dataset's vocabulary: two tokens gone, their order changed, two new ones.
    new_tokens = old_tokens[:2] + list(reversed(old_tokens[4:])) + ["龍", "鳳"]
    hparams["vocabulary"] = new_tokens
    hparams["mean"] = [0.0] * len(hparams["mean"])  # this run's own statistics must survive
    module = AsrModule(**hparams)
    fresh = {k: v.clone() for k, v in module.state_dict().items()}
    init = load_pretrained_weights(module, source / "model.ckpt")
    assert init.remapped == ["net.output.bias", "net.output.weight"] and init.skipped == []
    assert (init.shared_tokens, init.new_tokens) == (len(new_tokens) - 2, 2)
    state = module.state_dict()
    assert init.copied == len([k for k in saved["state_dict"] if not k.startswith("normalizer.")]) - 2
    for name, value in saved["state_dict"].items():
        if name.startswith("net.") and name not in init.remapped:
            assert torch.equal(state[name], value), name
    for name in init.remapped:
        for i, tok in enumerate(new_tokens):
            expected = saved["state_dict"][name][old_tokens.index(tok)] if tok in old_tokens else fresh[name][i]
            assert torch.equal(state[name][i], expected), (name, tok)
    assert torch.all(module.normalizer.mean == 0)
    with caplog.at_level("INFO", logger="lit_asr"):
        initialise_from(AsrModule(**hparams), str(source))
    assert f"matched by token: {len(new_tokens) - 2} tokens copied, 2 new tokens initialised" in caplog.text


def test_pretrained_model_of_another_size_skips_what_differs_and_refuses_a_stranger(trained, tmp_path):
    source = trained[0] / "models" / "deepspeech2" / "epoch_2"
    hparams = dict(torch.load(source / "model.ckpt", weights_only=True)["hyper_parameters"])
    hparams["model"] = {**hparams["model"], "rnn_size": hparams["model"]["rnn_size"] * 2}
    init = load_pretrained_weights(AsrModule(**hparams), source / "model.ckpt")
    assert init.copied > 0 and any(".rnn" in name for name in init.skipped)
    stranger = tmp_path / "stranger.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, stranger)
    with pytest.raises(LitAsrError, match="shares no tensor with this model"):
        load_pretrained_weights(AsrModule(**hparams), stranger)