"""task=infer on a file, a folder and a list; task=export gives the checkpoint's log-probs (TorchScript, ONNX)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lit_asr.data.audio import load_audio
from lit_asr.errors import LitAsrError
from lit_asr.models.loading import load_module
from lit_asr.tasks import export, infer
from tiny_checkpoint import run_config, tiny_checkpoint

ATOL = 1e-4  # float32 log-probs; measured differences are 0 (TorchScript) and a few 1e-6 (onnxruntime)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def module(tiny):
    return load_module(tiny["checkpoint"] / "model.ckpt")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export.run(run_config(tiny, out, "task=export", f"task.output_dir={out}"))
    return out


def _waves(tiny, module, count: int) -> list[torch.Tensor]:
    files = sorted((tiny["root"] / "wav").glob("*.wav"))[:count]
    return [load_audio(f, module.featurizer.sample_rate) for f in files]


def _transcripts(capsys) -> dict[str, str]:
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]
    return {path.rsplit("/", 1)[-1]: text for path, text in lines}


def test_infer_file_folder_and_list(tiny, module, tmp_path, capsys):
    folder = tmp_path / "audio"
    folder.mkdir()
    names = ["000_0.wav", "003_1.wav", "005_0.wav"]
    for name in names:
        shutil.copy(tiny["root"] / "wav" / name, folder / name)
    (folder / "notes.txt").write_text("not audio")  # a folder may hold other files
    listing = tmp_path / "list.txt"  # relative paths are relative to the list; a second column is ignored
    listing.write_text(f"audio/{names[0]}\n\n{folder / names[1]}\tignored column\n", encoding="utf-8")

    def expected(chosen: list[str]) -> dict[str, str]:  # greedy, batched as infer batches them (batch_size=8)
        return dict(zip(chosen, module.transcribe([load_audio(folder / n, 16000) for n in chosen])[0]))

    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={folder / names[0]}"))
    assert _transcripts(capsys) == expected(names[:1])
    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={listing}"))
    assert _transcripts(capsys) == expected(names[:2])
    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={folder}"))
    assert _transcripts(capsys) == expected(names)

    infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={folder}", "decoder=beam_search",
                         "decoder.lang_model_path=null", "decoder.beam_size=8", "decoder.num_proc_bsearch=1"))
    beam = _transcripts(capsys)
    assert list(beam) == names and all(beam.values())


def test_infer_reports_missing_audio(tiny, tmp_path):
    with pytest.raises(LitAsrError, match="audio not found"):
        infer.run(run_config(tiny, tmp_path, "task=infer", f"audio_path={tmp_path / 'nope.wav'}"))


def test_export_writes_models_and_description(exported, module):
    description = json.loads((exported / "export.json").read_text(encoding="utf-8"))
    assert description["labels"] == module.vocabulary.labels() and description["blank_id"] == 0
    assert description["features"]["sample_rate"] == 16000 and description["features"]["hop_length"] == 160
    expected = {"model.ts", "model_wave.ts"} | ({"model.onnx"} if _has("onnx") else set())
    assert set(description["files"]) == expected
    for info in description["files"].values():
        assert info["check_max_abs_diff"] is None or info["check_max_abs_diff"] < ATOL


def _has(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _reference(module, waves: list[torch.Tensor]) -> list[torch.Tensor]:
    """The checkpoint's log-probs of ``waves`` as one batch (zero-padded normalised features), trimmed.

    A lone utterance and the same utterance in a padded batch differ slightly in their last frames (the second
    convolution sees the first one's output on padded frames): that is the model's own behaviour, so a batch is
    compared with the checkpoint's batch.
    """
    _, log_probs, lengths = module.transcribe(waves)
    return [log_probs[i, :n] for i, n in enumerate(lengths.tolist())]


def _batch(module, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    feats = [module.featurizer(w) for w in waves]
    return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
            "wave_lengths": torch.tensor([len(w) for w in waves]),
            "feats": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=-5.0),
            "feat_lengths": torch.tensor([len(f) for f in feats])}


def _assert_close(reference: list[torch.Tensor], log_probs, lengths) -> float:
    log_probs, lengths = torch.as_tensor(log_probs), torch.as_tensor(lengths)
    assert lengths.tolist() == [len(r) for r in reference]
    diff = max(float((log_probs[i, : len(r)] - r).abs().max()) for i, r in enumerate(reference))
    assert diff < ATOL
    return diff


def test_torchscript_matches_the_checkpoint(exported, module, tiny):
    waves = _waves(tiny, module, 3)
    feats_model = torch.jit.load(str(exported / "model.ts"))
    wave_model = torch.jit.load(str(exported / "model_wave.ts"))
    with torch.no_grad():
        # a real utterance alone, a padded batch of different lengths, and one longer than the tracing example
        for chosen in (waves[:1], waves, [torch.cat(waves * 2), waves[0]]):
            reference, batch = _reference(module, chosen), _batch(module, chosen)
            _assert_close(reference, *feats_model(batch["feats"], batch["feat_lengths"]))
            _assert_close(reference, *wave_model(batch["waves"], batch["wave_lengths"]))


def test_onnx_matches_the_checkpoint(exported, module, tiny):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    waves = _waves(tiny, module, 3)
    for chosen in (waves[:1], waves):
        batch = _batch(module, chosen)
        outputs = session.run(None, {"feats": batch["feats"].numpy(), "feat_lengths": batch["feat_lengths"].numpy()})
        _assert_close(_reference(module, chosen), *outputs)
