"""task=eval caches log-probs per (checkpoint, manifest): a second run decodes without loading the model."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from lit_asr.tasks import evaluate
from tiny_checkpoint import run_config, tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_second_eval_reads_the_cache_and_a_new_checkpoint_invalidates_it(tiny, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="lit_asr")
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny["checkpoint"], checkpoint)
    cfg = run_config(tiny, tmp_path, f"resume_model={checkpoint}", "task=eval", f"task.cache_dir={tmp_path / 'cache'}")
    loads = []
    real_load = evaluate.load_module
    monkeypatch.setattr(evaluate, "load_module", lambda path: loads.append(path) or real_load(path))

    first = evaluate.run(cfg)
    assert len(loads) == 1 and len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert "cached log-probabilities in" in caplog.text

    caplog.clear()
    second = evaluate.run(cfg)
    assert len(loads) == 1, "the model was loaded although the cache holds its log-probs"
    assert "using cached log-probabilities" in caplog.text
    assert second == first

    # the same folder with a re-saved checkpoint (new mtime) is a different model: the cache must not answer
    stat = (checkpoint / "model.ckpt").stat()
    os.utime(checkpoint / "model.ckpt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    caplog.clear()
    assert evaluate.run(cfg) == first
    assert len(loads) == 2 and "using cached" not in caplog.text
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_another_manifest_is_another_cache_entry(tiny, tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.test"
    manifest.write_text("".join(tiny["test_manifest"].read_text(encoding="utf-8").splitlines(True)[:3]),
                        encoding="utf-8")
    cache = tmp_path / "cache"
    base = ("task=eval", f"task.cache_dir={cache}")
    data_all, cached_all = evaluate.load_log_probs(tiny["checkpoint"] / "model.ckpt", run_config(tiny, tmp_path, *base))
    data_few, cached_few = evaluate.load_log_probs(tiny["checkpoint"] / "model.ckpt",
                                                   run_config(tiny, tmp_path, *base, f"test_manifest={manifest}"))
    assert not cached_all and not cached_few
    assert len(data_all["texts"]) == 8 and len(data_few["texts"]) == 3
    assert data_all["labels"][0] == "" and len(data_all["labels"]) == data_all["log_probs"][0].shape[1]


def test_an_unreadable_cache_entry_is_recomputed_not_trusted(tiny, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lit_asr")
    cfg = run_config(tiny, tmp_path, "task=eval", f"task.cache_dir={tmp_path / 'cache'}")
    entry = evaluate.cache_file(tiny["checkpoint"] / "model.ckpt", cfg)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"\x80\x04not a torch file")  # truncated, or a pickle planted in the cache folder
    data, cached = evaluate.load_log_probs(tiny["checkpoint"] / "model.ckpt", cfg)
    assert not cached and len(data["texts"]) == 8
    assert "ignoring unreadable cache entry" in caplog.text
    assert evaluate.load_log_probs(tiny["checkpoint"] / "model.ckpt", cfg)[1], "the entry was not rewritten"
