"""Round 2 of bad input: manifests checked against the audio, text that is not UTF-8, and messages that say
what a wrong file is (docs/reliability.md, "Round 2: decoding, manifests, one source of truth")."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lit_asr.data.dataset import AsrDataset
from lit_asr.data.manifest import ManifestEntry, read_manifest
from lit_asr.data.prepare import read_list
from lit_asr.errors import LitAsrError
from lit_asr.models.loading import load_module
from lit_asr.tasks.infer import audio_files
from lit_asr.utils.checkpoints import read_checkpoint
from lit_asr.utils.config_check import check_config

from .common import build_parts, compose_config, manifest_items, write_jsonl


def _long_copy(source: str, seconds: float, path: Path) -> Path:
    """A real file of at least ``seconds`` made by repeating the speech of ``source``."""
    wave, sr = soundfile.read(source)
    soundfile.write(path, np.tile(wave, int(seconds * sr / len(wave)) + 1), sr)
    return path


def test_non_utf8_transcript_and_boolean_duration_are_rejected_and_counted(tiny, tmp_path):
    good = manifest_items(tiny["train_manifest"])[:3]
    path = write_jsonl(tmp_path / "manifest", [good[0], {**good[1], "duration": True}])
    with open(path, "ab") as f:  # "万\xff荷": one stray byte inside an otherwise good transcript
        f.write(json.dumps({**good[2], "text": "万@荷"}, ensure_ascii=False).encode().replace(b"@", b"\xff") + b"\n")
    entries, report = read_manifest(path)
    assert dict(report.skipped) == {"duration not a positive number": 1, "not UTF-8 text": 1}
    assert report.examples["not UTF-8 text"] == f"{path}:3"
    assert [e.text for e in entries] == [good[0]["text"]]  # never "万荷"


def test_a_byte_order_mark_does_not_cost_the_first_utterance(tiny, tmp_path):
    good = manifest_items(tiny["train_manifest"])[:2]
    path = write_jsonl(tmp_path / "manifest", good)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows Notepad saves "UTF-8"
    entries, report = read_manifest(path)
    assert report.kept == 2 and not report.skipped


def test_tsv_list_with_bad_bytes_or_a_bom_for_prepare_data(tiny, tmp_path):
    good = manifest_items(tiny["train_manifest"])[:3]
    lines = [f"{g['audio_filepath']}\t{g['text']}".encode() for g in good]
    lines[1] = lines[1].replace(good[1]["text"][1].encode(), b"\xff")
    listing = tmp_path / "train.tsv"
    listing.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    items, bad = read_list(listing, "train")
    assert [i.audio for i in items] == [good[0]["audio_filepath"], good[2]["audio_filepath"]]
    assert [(b.path, b.reason) for b in bad] == [(f"{listing}:2", "not UTF-8 text")]


def test_a_wrong_duration_is_replaced_by_the_real_one_before_the_bounds(tiny, tmp_path, caplog):
    good = manifest_items(tiny["train_manifest"])
    long = _long_copy(good[0]["audio_filepath"], 25, tmp_path / "long.wav")  # a 25 s file that says 3 s
    train = write_jsonl(tmp_path / "manifest.train", good + [{"audio_filepath": str(long), "duration": 3.0,
                                                              "text": "白日"}])
    with caplog.at_level(logging.WARNING):
        entries, report = read_manifest(train, 0.5, 20.0, duration_tolerance=0.2)
    assert report.corrected == 1 and report.skipped == {"longer than max_duration=20.0s": 1}
    assert re.fullmatch(rf"{train}:{len(good) + 1}: 3 s in the manifest, 2\d\.\d\d s in the audio",
                        report.corrected_example)
    assert any("took the duration of 1 from the audio" in r.getMessage() for r in caplog.records)

    # With a longer max_duration it is kept with its real length, so the batch bound holds for real audio.
    dm = build_parts(compose_config(tiny, tmp_path, f"train_manifest={train}", "max_duration=40",
                                    "max_batch_duration=40"))[1]
    dm.setup("fit")
    real = {e.audio_filepath: soundfile.info(e.audio_filepath).duration for e in dm.train_set.entries}
    assert real[str(long)] > 25
    for batch in dm.train_dataloader().batch_sampler:
        paths = [dm.train_set.entries[i].audio_filepath for i in batch]
        assert max(real[p] for p in paths) * len(paths) <= 40.0 + 0.2 * len(paths)


def test_a_file_changed_after_the_manifest_was_read_is_skipped_when_loaded(tiny, tmp_path, caplog):
    good = manifest_items(tiny["train_manifest"])[0]
    long = _long_copy(good["audio_filepath"], 25, tmp_path / "grown.wav")
    dm = build_parts(compose_config(tiny, tmp_path))[1]
    dataset = AsrDataset([ManifestEntry(str(long), good["duration"], good["text"])], dm.vocabulary, dm.featurizer,
                         dm.normalizer(), duration_tolerance=0.2)
    with caplog.at_level(logging.WARNING):
        assert dataset[0] is None
    assert re.search(rf"skipping utterance: audio {long} lasts 2\d\.\d\d s, not the {good['duration']:.2f} s it "
                     r"was batched by \(re-run scripts/prepare_data.py\)", caplog.text)


def test_a_folder_given_as_manifest_is_called_a_folder(tiny, tmp_path):
    with pytest.raises(LitAsrError, match=rf"^manifest {tmp_path} is a folder"):
        read_manifest(tmp_path)
    with pytest.raises(LitAsrError, match=rf"^manifest {tmp_path} is a folder, not a file \(set train_manifest="):
        check_config(compose_config(tiny, tmp_path, f"train_manifest={tmp_path}"))


@pytest.mark.parametrize("seed", [0, 1, 2, None], ids=["random0", "random1", "random2", "text"])
def test_a_file_that_is_no_checkpoint_is_not_called_dangerous(tmp_path, seed):
    path = tmp_path / "model.ckpt"
    content = np.random.default_rng(seed).bytes(4000) if seed is not None else b"hello, a text file\n"
    path.write_bytes(b"\x00" + content)  # never the zip or pickle magic by chance
    message = (f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (neither a zip archive as torch.save "
               "writes nor a legacy pickle)")
    for load in (load_module, read_checkpoint):  # task=eval/infer/export, and resume/pretrained_model
        with pytest.raises(LitAsrError) as err:
            load(path)
        assert str(err.value) == message


def test_infer_on_a_list_with_a_missing_file_skips_it_like_a_folder(tiny, tmp_path, caplog):
    good = manifest_items(tiny["test_manifest"])[:2]
    listing = tmp_path / "list.txt"
    listing.write_text(f"\ufeff{good[0]['audio_filepath']}\n{tmp_path / 'gone.wav'}\n{good[1]['audio_filepath']}\n",
                       encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        files = audio_files(str(listing))
    assert files == [Path(good[0]["audio_filepath"]), Path(good[1]["audio_filepath"])]
    assert f"skipped 1 listed file(s) that do not exist, e.g. {tmp_path / 'gone.wav'}" in caplog.text
    (tmp_path / "none.txt").write_text(str(tmp_path / "gone.wav") + "\n", encoding="utf-8")
    with pytest.raises(LitAsrError, match="no audio files in"):
        audio_files(str(tmp_path / "none.txt"))
    with pytest.raises(LitAsrError, match="^audio not found: "):
        audio_files(str(tmp_path / "gone.wav"))
