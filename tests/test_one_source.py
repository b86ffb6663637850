"""One source of truth: the module owns normalisation and features, training's test pass and task=eval score the
same utterances, and every callback comes from conf/callbacks."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lit_asr.callbacks.checkpoint import GracefulStop, LastBatchResume, ScheduleLengthCheck
from lit_asr.data.audio import load_audio
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.models.loading import load_module
from lit_asr.tasks import evaluate
from lit_asr.tasks.train import build_datamodule, build_parts, build_trainer
from reliability.common import manifest_items, write_jsonl
from tiny_checkpoint import run_config, tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_training_batches_use_the_modules_statistics(tiny, tmp_path):
    module, dm = build_parts(run_config(tiny, tmp_path, "augment=none", "resume_model=null"))
    with torch.no_grad():  # what restoring a checkpoint with other statistics does to the module
        module.normalizer.mean += 1.0
        module.normalizer.std *= 2.0
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    wave = load_audio(batch["audio"][0], module.featurizer.sample_rate)
    expected = module.normalizer(module.featurizer(wave))  # as eval, infer and export normalise
    assert torch.allclose(batch["feats"][0, : batch["feat_lengths"][0]], expected, atol=1e-5)


def test_the_test_pass_and_task_eval_score_the_same_utterances(tiny, tmp_path):
    tests = manifest_items(tiny["test_manifest"])
    vocab = Vocabulary.load(tiny["dataset_vocab"])
    long_text = "".join(t for t in vocab.tokens[2:] if t != "<space>")[:90]  # CTC-infeasible in ~2 s
    manifest = write_jsonl(tmp_path / "manifest.test", tests + [{**tests[0], "text": long_text}])
    cfg = run_config(tiny, tmp_path, f"test_manifest={manifest}", f"task.cache_dir={tmp_path / 'cache'}",
                     "task=eval")
    module = load_module(tiny["checkpoint"] / "model.ckpt")
    dm = build_datamodule(cfg, module)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    val_cer = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/cer"]
    assert len(dm.test_set) == len(tests) + 1  # the infeasible utterance is scored (as an error), not dropped
    assert evaluate.run(cfg) == pytest.approx(val_cer, abs=1e-6)


def _trainer_config(tiny, tmp_path, *extra):
    return run_config(tiny, tmp_path, "logger=none", f"trainer.default_root_dir={tmp_path}", *extra)


def test_every_callback_comes_from_conf_and_can_be_dropped(tiny, tmp_path):
    kinds = (ScheduleLengthCheck, LastBatchResume, GracefulStop)
    trainer = build_trainer(_trainer_config(tiny, tmp_path))
    assert all(sum(isinstance(c, kind) for c in trainer.callbacks) == 1 for kind in kinds)
    trainer = build_trainer(_trainer_config(tiny, tmp_path, "callbacks.graceful_stop=null"))
    assert not any(isinstance(c, GracefulStop) for c in trainer.callbacks)


def test_trainer_arguments_as_the_readme_says(tiny, tmp_path):
    # Keys of conf/trainer/default.yaml plainly, any other Trainer argument with +, ++ for either.
    cfg = _trainer_config(tiny, tmp_path, "trainer.gradient_clip_val=5", "+trainer.limit_val_batches=2",
                          "++trainer.limit_train_batches=3", "++trainer.log_every_n_steps=7")
    trainer = build_trainer(cfg)
    assert (trainer.gradient_clip_val, trainer.limit_val_batches, trainer.limit_train_batches,
            trainer.log_every_n_steps) == (5, 2, 3, 7)
    with pytest.raises(Exception, match=r"\+trainer.limit_val_batches=2"):  # Hydra's advice, as documented
        run_config(tiny, tmp_path, "trainer.limit_val_batches=2")


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_precision_auto_picks_bf16_only_where_it_is_native_and_says_which(tiny, tmp_path, monkeypatch, caplog,
                                                                          native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    with caplog.at_level("INFO", logger="lit_asr"):
        trainer = build_trainer(_trainer_config(tiny, tmp_path, "trainer.precision=auto"))
    assert trainer.precision == expected
    assert f"precision=auto: {expected}" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="lit_asr"):  # an explicit precision is kept, silently
        assert build_trainer(_trainer_config(tiny, tmp_path, "trainer.precision=32-true")).precision == "32-true"
    assert "precision=auto" not in caplog.text
