"""lit-asr's half of scripts/compare_masr.sh: the epoch-throughput callback in a real run.py epoch, the shared
manifests and the side-by-side report (MASR's half needs its own virtualenv and is not run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lit_asr.benchmark import masr_compare
from lit_asr.data.manifest import read_manifest
from lit_asr.data.vocabulary import Vocabulary
from tiny_data import make_tiny_dataset, overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_masr_data")
    return make_tiny_dataset(root)


def test_epoch_throughput_counts_every_utterance_of_the_first_epoch(tiny, tmp_path):
    out = tmp_path / "lit.json"
    args = overrides(tiny, tmp_path, num_epoch=2, augment="none", logger="none", max_batch_duration="null",
                     eval_every_epoch="false")
    args += ["+callbacks.epoch_throughput._target_=lit_asr.benchmark.epoch_throughput.EpochThroughput",
             f"+callbacks.epoch_throughput.output={out}"]
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    entries, _ = read_manifest(tiny["train_manifest"], 0.5, 20.0)
    # Only the first of the two epochs is counted.
    assert result["utterances"] == len(entries)
    assert result["batches"] == -(-len(entries) // 8)
    # frames x 10 ms falls short of each file's length by less than one 25 ms window
    manifest_seconds = sum(e.duration for e in entries)
    assert manifest_seconds - 0.025 * len(entries) <= result["audio_seconds"] <= manifest_seconds
    assert result["parameters"] > 0 and result["train_seconds"] > 0
    assert result["audio_seconds_per_second"] == pytest.approx(result["audio_seconds"] / result["train_seconds"])


def test_subset_writes_the_first_utterances_with_absolute_paths(tiny, tmp_path):
    masr_compare.main(["subset", "--train", str(tiny["train_manifest"]), "--test", str(tiny["test_manifest"]),
                       "--limit-train", "3", "--limit-test", "0", "--out", str(tmp_path)])
    train = [json.loads(line) for line in (tmp_path / "manifest.train").read_text().splitlines()]
    test, _ = read_manifest(tmp_path / "manifest.test")
    source, _ = read_manifest(tiny["train_manifest"], 0.5, 20.0)
    assert [r["audio_filepath"] for r in train] == [e.audio_filepath for e in source[:3]]
    assert all(Path(r["audio_filepath"]).is_absolute() for r in train)
    assert len(test) == len(read_manifest(tiny["test_manifest"], 0.5, 20.0)[0])
    vocabulary = Vocabulary.load(tmp_path / "vocabulary.txt")  # of exactly the two written manifests
    chars = {ch for text in [r["text"] for r in train] + [e.text for e in test] for ch in text}
    assert len(vocabulary) == 2 + len(chars) and all(ch in vocabulary for ch in chars)


def test_subset_of_an_empty_manifest_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty.train"
    empty.write_text("")
    code = masr_compare.main(["subset", "--train", str(empty), "--test", str(empty), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {empty}")


def test_report_gives_the_ratio_of_the_two_epochs(tmp_path, capsys):
    def side(name: str, utterances: int, audio: float, seconds: float) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"framework": name, "parameters": 1, "batches": 1, "utterances": utterances,
                                    "audio_seconds": audio, "train_seconds": seconds, "threads": 2, "device": "cpu",
                                    "utterances_per_second": utterances / seconds,
                                    "audio_seconds_per_second": audio / seconds}))
        return path

    lit, masr = side("lit-asr", 100, 300.0, 10.0), side("MASR 3.0.3", 96, 280.0, 20.0)
    out = tmp_path / "both.json"
    assert masr_compare.main(["report", "--lit", str(lit), "--masr", str(masr), "--lit-process-seconds", "15",
                              "--masr-process-seconds", "30", "--settings", '{"workers": "1"}',
                              "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = (300.0 / 10.0) / (280.0 / 20.0)
    assert f"{expected:.2f}x in audio s/s" in printed
    both = json.loads(out.read_text())
    assert both["ratio"]["audio_seconds_per_second"] == pytest.approx(expected)
    assert both["ratio"]["utterances_per_second"] == pytest.approx((100 / 10.0) / (96 / 20.0))
    assert both["masr"]["process_seconds"] == 30 and both["settings"] == {"workers": "1"}
