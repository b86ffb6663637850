"""VisualDL records, read back with VisualDL's own reader: the logger alone, and a short real training run."""

from pathlib import Path

import pytest
from visualdl.reader.reader import LogReader

from lit_asr.loggers.visualdl import VisualDLLogger, flatten_hparams
from test_checkpoints import shared_tiny, train


def read(logdir: Path) -> LogReader:
    """VisualDL's reader over the one record file in ``logdir``."""
    files = sorted(Path(logdir).glob("vdlrecords.*.log"))
    assert len(files) == 1, files
    return LogReader(file_path=str(files[0]))


def steps(reader: LogReader, tag: str) -> list[int]:
    return [record.id for record in reader.get_data("scalar", tag)]


def test_flatten_hparams_keeps_the_table_readable():
    flat = flatten_hparams({"model": {"rnn_size": 32, "conv_channels": [8, 8], "bidirectional": True},
                            "vocabulary": ["x"] * 3000, "scheduler": None, "lr": 1e-3})
    assert flat == {"model/rnn_size": 32, "model/conv_channels": "[8, 8]", "model/bidirectional": "True",
                    "vocabulary/len": 3000, "scheduler": "None", "lr": 1e-3}


def test_logger_writes_scalars_hparams_and_text_and_appends_on_resume(tmp_path):
    logger = VisualDLLogger(logdir=str(tmp_path))
    logger.log_hyperparams({"model": {"rnn_size": 32}, "vocabulary": ["a"] * 20})
    for step in range(3):
        logger.log_metrics({"train/loss": 10.0 - step, "train/lr": 1e-3}, step=step)
    logger.log_text("val/examples", "1. ref: 白日\n   hyp: 白", step=3)
    logger.finalize("success")

    resumed = VisualDLLogger(logdir=str(tmp_path))
    resumed.resume = True  # a resumed run continues the same file: VisualDL shows only the newest one
    resumed.log_metrics({"train/loss": 7.0}, step=3)
    resumed.finalize("success")

    reader = read(tmp_path)
    tags = reader.get_tags()
    assert set(tags["scalar"]) == {"train/loss", "train/lr"} and tags["text"] == ["val/examples"]
    assert "hyper_parameters" in tags
    assert steps(reader, "train/loss") == [0, 1, 2, 3]
    assert [r.value for r in reader.get_data("scalar", "train/loss")] == [10.0, 9.0, 8.0, 7.0]
    assert reader.get_data("text", "val/examples")[0].text.encoded_text_string.startswith("1. ref: 白日")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def test_training_run_writes_records_visualdl_reads_back(tiny, tmp_path):
    proc = train(tiny, tmp_path, num_epoch=1, logger="visualdl", **{"trainer.log_every_n_steps": 1})
    assert proc.returncode == 0, proc.stderr[-3000:]
    reader = read(tmp_path / "log")
    tags = reader.get_tags()
    assert {"train/loss", "train/lr", "val/loss", "val/cer"} <= set(tags["scalar"])
    assert steps(reader, "train/loss") == steps(reader, "train/lr") == list(range(6))  # one epoch of 6 steps
    assert steps(reader, "val/cer") == steps(reader, "val/loss") == [5]  # Lightning's step of the epoch's end
    examples = reader.get_data("text", "val/examples")
    assert [r.id for r in examples] == [6]  # optimizer steps done
    assert all("ref: " in r.text.encoded_text_string and "hyp: " in r.text.encoded_text_string for r in examples)
    assert "hyper_parameters" in tags
