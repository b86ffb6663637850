"""Loading never runs code from a file, and external programs are never started through a shell.

The code is checked by parsing it (comments and strings cannot fool the check); a checkpoint, an evaluation cache
and a mean/std file carrying a pickled payload are refused, with the payload shown to be live.
"""

from __future__ import annotations

import ast
import pathlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_asr.data.features import load_mean_std
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError
from lit_asr.models.loading import load_module, load_pretrained_weights
from lit_asr.tasks.evaluate import cache_file, load_log_probs
from lit_asr.utils.checkpoints import read_checkpoint

from .common import ROOT, compose_config, error_line, run_cli

SOURCES = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "scripts").glob("*.py"), ROOT / "run.py"])


def _calls(name: str):
    """(file, line, call node) of every call whose function is ``name`` or ends in ``.name``."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path.relative_to(ROOT), node.lineno, node


def _keyword(node: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in node.keywords if k.arg == name), "missing")


def test_external_programs_get_argument_lists_never_a_shell():
    shell = [(f, n) for f, n, node in (c for name in ("run", "Popen", "call", "check_call", "check_output")
                                       for c in _calls(name)) if _keyword(node, "shell") not in ("missing", False)]
    assert not shell
    assert not [(f, n) for name in ("system", "popen", "getoutput", "getstatusoutput") for f, n, _ in _calls(name)]
    runs = [(f, n, node) for f, n, node in _calls("run") if "subprocess" in ast.unparse(node.func)]
    assert runs, "the scan found no subprocess.run at all: it is looking in the wrong place"
    for f, n, node in runs:  # a literal list, or demo_corpus's SynthJob.command() which returns one
        assert isinstance(node.args[0], ast.List) or ast.unparse(node.args[0]) == "job.command()", (f, n)


def test_every_load_refuses_pickled_code():
    loads = list(_calls("load"))
    torch_loads = [(f, n, node) for f, n, node in loads if ast.unparse(node.func) == "torch.load"]
    assert torch_loads and all(_keyword(node, "weights_only") is True for _, _, node in torch_loads), torch_loads
    assert all(_keyword(node, "allow_pickle") is False for _, _, node in loads if ast.unparse(node.func) == "np.load")
    assert all(_keyword(node, "weights_only") is True for _, _, node in _calls("load_from_checkpoint"))
    fits = [node for _, _, node in _calls("fit") if any(k.arg == "ckpt_path" for k in node.keywords)]
    assert fits and all(_keyword(node, "weights_only") is True for node in fits)
    assert not [(f, n) for name in ("loads", "Unpickler") for f, n, node in _calls(name)
                if ast.unparse(node.func).startswith(("pickle.", "dill.", "cloudpickle."))]


class Payload:
    """Unpickling this creates ``marker``: what a malicious file would do with os.system instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(a checkpoint folder whose model.ckpt carries the payload, the marker the payload would create)."""
    marker = tmp_path / "PWNED"
    (tmp_path / "evil").mkdir()
    torch.save({"state_dict": {}, "hyper_parameters": {"vocabulary": Payload(marker)}},
               tmp_path / "evil" / "model.ckpt")
    return tmp_path / "evil", marker


REFUSED = "it holds objects other than tensors and plain data, which are never unpickled (that could run code)"


def test_the_payload_is_live(evil):
    folder, marker = evil
    torch.load(folder / "model.ckpt", weights_only=False)  # what a careless loader would do
    assert marker.exists()


def test_checkpoint_with_pickled_code_is_refused(evil, tiny, tmp_path):
    folder, marker = evil
    ckpt = folder / "model.ckpt"
    for load in (read_checkpoint, load_module):
        with pytest.raises(LitAsrError) as err:
            load(ckpt)
        assert str(err.value) == f"cannot read checkpoint {ckpt}: {REFUSED}"
    with pytest.raises(LitAsrError, match="never unpickled"):
        load_pretrained_weights(None, ckpt)
    # evaluation's log-prob cache, planted where an evaluation of this checkpoint would look
    cfg = compose_config(tiny, tmp_path, "task=eval", f"task.cache_dir={tmp_path / 'cache'}")
    cache = cache_file(ckpt, cfg)
    cache.parent.mkdir(parents=True)
    torch.save({"log_probs": Payload(marker)}, cache)
    with pytest.raises(LitAsrError, match="cannot read checkpoint"):  # cache entry ignored, then the model refused
        load_log_probs(ckpt, cfg)
    # normalisation statistics
    np.savez(tmp_path / "mean_std.npz", mean=np.array([Payload(marker)], dtype=object), std=np.ones(80))
    with pytest.raises(LitAsrError, match="Object arrays cannot be loaded when allow_pickle=False"):
        load_mean_std(tmp_path / "mean_std.npz")
    assert not marker.exists()


def test_run_py_refuses_it_in_one_line(evil, tiny, tmp_path):
    folder, marker = evil
    proc = run_cli([ROOT / "run.py", "task=eval", f"resume_model={folder}", f"test_manifest={tiny['test_manifest']}",
                    f"hydra.run.dir={tmp_path / 'out'}", "task.cache_dir=null", "num_workers=0"], cwd=tmp_path)
    assert error_line(proc) == f"error: cannot read checkpoint {folder / 'model.ckpt'}: {REFUSED}"
    assert not marker.exists()


def test_corrupt_dataset_files_are_one_line_errors(tiny, tmp_path):
    (tmp_path / "truncated.ckpt").write_bytes(Path(tiny["mean_std_path"]).read_bytes()[:100])
    with pytest.raises(LitAsrError, match=r"^cannot read checkpoint .*truncated\.ckpt: "):
        read_checkpoint(tmp_path / "truncated.ckpt")
    with pytest.raises(LitAsrError, match=r"^cannot read normalisation file .*truncated\.ckpt: .*\(re-run scripts/"):
        load_mean_std(tmp_path / "truncated.ckpt")
    (tmp_path / "vocabulary.txt").write_bytes(b"<blank>\n<unk>\n\xff\xfe\n")
    with pytest.raises(LitAsrError, match=r"vocabulary\.txt is not UTF-8 text \(invalid start byte at byte 14\)"):
        Vocabulary.load(tmp_path / "vocabulary.txt")
