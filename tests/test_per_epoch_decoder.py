"""The per-epoch test pass: the configured decoder gives val/cer, greedy decoding val/cer_greedy; it can be off."""

from __future__ import annotations

import re

import numpy as np
import pytest

from test_beam_search import MANDARIN, decoder
from test_checkpoints import train
from test_visualdl import read
from tiny_checkpoint import tiny_checkpoint

TEST_LINE = re.compile(r"Test epoch: 1, time/epoch: \S+, loss: \S+, cer: (\S+?)(?:, cer_greedy: (\S+))?$", re.M)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny dataset and a character 3-gram LM of its training text."""
    return tiny_checkpoint(tmp_path_factory)


def _data(tiny: dict) -> dict:
    return {k: tiny[k] for k in ("train_manifest", "test_manifest", "dataset_vocab", "mean_std_path")}


def test_submit_decodes_in_the_workers_and_matches_decode_batch():
    rng = np.random.default_rng(2)
    batch = [np.log(rng.dirichlet(np.full(len(MANDARIN), 0.3), size=n)) for n in (12, 30, 0, 7)]
    expected = decoder(MANDARIN, beam_size=8).decode_batch(batch)
    with decoder(MANDARIN, beam_size=8, num_proc_bsearch=2) as parallel:
        first, second = parallel.submit(batch), parallel.submit(batch[:2])  # both in flight at once
        assert parallel._pool is not None
        assert second() == expected[:2] and first() == expected


def test_beam_search_with_an_lm_logs_both_cers_and_they_differ(tiny, tmp_path):
    proc = train(_data(tiny), tmp_path, num_epoch=1, logger="visualdl", decoder="beam_search",
                 **{"decoder.lang_model_path": tiny["lm"], "decoder.beam_size": 16, "decoder.num_proc_bsearch": 2})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = TEST_LINE.findall(proc.stdout)
    assert len(lines) == 1 and lines[0][1], proc.stdout[-3000:]
    cer, cer_greedy = map(float, lines[0])
    reader = read(tmp_path / "log")
    logged = {tag: reader.get_data("scalar", tag)[-1].value for tag in ("val/cer", "val/cer_greedy")}
    assert logged["val/cer"] == pytest.approx(cer, abs=1e-5)
    assert logged["val/cer_greedy"] == pytest.approx(cer_greedy, abs=1e-5)
    assert cer != pytest.approx(cer_greedy, abs=1e-3)  # the LM changed the transcripts


def test_greedy_decoder_keeps_the_masr_line(tiny, tmp_path):
    proc = train(_data(tiny), tmp_path, num_epoch=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = TEST_LINE.findall(proc.stdout)
    assert len(lines) == 1 and lines[0][1] == "", proc.stdout[-3000:]  # cer_greedy would repeat cer


def test_eval_every_epoch_false_trains_without_the_test_pass(tiny, tmp_path):
    proc = train(_data(tiny), tmp_path, num_epoch=1, eval_every_epoch="false", logger="visualdl",
                 decoder="beam_search", **{"decoder.lang_model_path": tiny["lm"], "trainer.log_every_n_steps": 1})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Test epoch:" not in proc.stdout
    scalars = read(tmp_path / "log").get_tags()["scalar"]
    assert "train/loss" in scalars and not [tag for tag in scalars if tag.startswith("val/")]
    models = tmp_path / "models" / "deepspeech2"
    assert sorted(p.name for p in models.iterdir()) == ["epoch_1", "last_model"]  # no best_model without a CER
