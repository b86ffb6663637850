"""Export: a checkpoint as TorchScript and ONNX models that map features or waveforms to CTC log-probabilities.

Written to ``task.output_dir`` (default ``<save_model_path>/<use_model>/export/``):

* ``model.ts`` / ``model.onnx``: (feats (B, T, F) float32 log features as ``FeatureExtractor`` makes them,
  feat_lengths (B,) int64) -> (log_probs (B, T', V), out_lengths (B,)); normalisation is inside.
* ``model_wave.ts``: (waves (B, S) float32 at the model's sample rate, wave_lengths (B,) int64) -> the same,
  feature extraction included.
* ``export.json``: vocabulary labels, feature settings, inputs and outputs, so the files can be used alone.

Both take padded batches of any size and length. Frames past each length are zeroed after normalisation, as in
the checkpoint's own batches, so whatever the padding value the outputs equal the checkpoint's on the same batch.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.errors import LitAsrError
from lit_asr.inference.device import resolve_device
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.loading import load_module
from lit_asr.utils.checkpoints import checkpoint_to_evaluate, model_dir

log = logging.getLogger("lit_asr")


class FeatureModel(nn.Module):
    """(log features, frame counts) -> (log-probs, output lengths): normalisation plus the network."""

    def __init__(self, normalizer: Normalizer, net: nn.Module):
        super().__init__()
        self.normalizer = normalizer
        self.net = net

    def forward(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # zeroed padding is what training and evaluation batches hold, and what the convolutions pad with
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < feat_lengths[:, None]
        return self.net(self.normalizer(feats) * valid.unsqueeze(-1), feat_lengths)


class WaveModel(nn.Module):
    """(waveforms, sample counts) -> (log-probs, output lengths): feature extraction plus :class:`FeatureModel`."""

    def __init__(self, featurizer: FeatureExtractor, model: FeatureModel):
        super().__init__()
        self.transform = featurizer.transform
        self.eps = featurizer.eps
        self.win_length = featurizer.win_length
        self.hop_length = featurizer.hop_length
        self.model = model

    def forward(self, waves: torch.Tensor, wave_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = torch.log(self.transform(waves) + self.eps).transpose(1, 2)
        frames = torch.div(wave_lengths - self.win_length, self.hop_length, rounding_mode="floor") + 1
        return self.model(feats, frames.clamp(min=1))


def _example(module: AsrModule, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    # two utterances of different lengths: a batch of one could hide lengths baked in from the example's shape
    rate = module.featurizer.sample_rate
    lengths = torch.tensor([int(seconds * rate), int(seconds * rate * 0.6)])
    waves = torch.randn(2, int(lengths[0])) * 0.1
    waves[1, int(lengths[1]):] = 0
    return waves, lengths


def _features(module: AsrModule, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feats = [module.featurizer(w[:n]) for w, n in zip(waves, lengths.tolist())]
    return nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor([f.shape[0] for f in feats])


def _max_diff(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[Any, Any]) -> float:
    log_probs, lengths = (torch.as_tensor(g, device=e.device) for g, e in zip(got, expected))
    if not torch.equal(lengths, expected[1]):
        raise LitAsrError(f"exported model gives output lengths {lengths.tolist()}, expected {expected[1].tolist()}")
    valid = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[:, None]
    return float((log_probs - expected[0]).abs()[valid].max())


def export_torchscript(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> float:
    """Trace ``model`` into ``path``; returns the reloaded file's max abs difference on ``inputs``."""
    with warnings.catch_warnings():
        # torch.jit is deprecated (torch 2.11 warns), yet still the one format libtorch (C++) loads without Python
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, inputs, check_trace=False)
    traced.save(str(path))
    return _max_diff(model(*inputs), torch.jit.load(str(path))(*inputs))


def export_onnx(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int) -> float | None:
    """Export ``model`` to ONNX with dynamic batch and time axes; the max abs difference when onnxruntime is there."""
    names = ["feats", "feat_lengths"]
    axes = {"feats": {0: "batch", 1: "frames"}, "feat_lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "out_frames"}, "out_lengths": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: torch 2.11's default (dynamo) exporter needs onnxscript and, with dynamic batch and time
        # axes, fails in torch.export on the GRUs; the TorchScript-based one needs only onnx and is exact here
        torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=names,
                          output_names=["log_probs", "out_lengths"], dynamic_axes=axes, opset_version=opset)
    import onnx

    onnx.checker.check_model(str(path))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _max_diff(model(*inputs), session.run(None, {n: x.cpu().numpy() for n, x in zip(names, inputs)}))


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _description(module: AsrModule, checkpoint: Path, files: dict[str, Any]) -> dict[str, Any]:
    f = module.featurizer
    return {
        "checkpoint": str(checkpoint),
        "labels": module.vocabulary.labels(), "tokens": module.vocabulary.tokens, "blank_id": 0,
        "features": {**f.config, "eps": f.eps, "win_length": f.win_length, "hop_length": f.hop_length,
                     "computation": f"log(torchaudio.transforms.{type(f.transform).__name__}(n_fft=win_length, "
                                    "hop_length, center=False, other arguments default)(wave) + eps), transposed "
                                    "to (frames, dim); frames = (samples - win_length) // hop_length + 1; "
                                    "mean/std normalisation is inside the exported models"},
        "model": module.hparams.model, "files": files, "torch": torch.__version__,
    }


def run(cfg: DictConfig) -> None:
    """Write the exported models and ``export.json`` (with the exported-vs-checkpoint check of each file)."""
    chosen = cfg.task.formats
    formats = {chosen} if isinstance(chosen, str) else set(OmegaConf.to_container(chosen))  # task.formats=onnx too
    unknown = formats - {"torchscript", "onnx"}
    if unknown:
        raise LitAsrError(f"task.formats: unknown {sorted(unknown)}; choose from torchscript, onnx")
    checkpoint = checkpoint_to_evaluate(cfg)
    device = resolve_device(cfg.get("device", "auto"))
    module = load_module(checkpoint).to(device)  # traced on this device: the files run where they were exported
    log.info("exporting on %s", device)
    out = Path(cfg.task.output_dir) if cfg.task.get("output_dir") else model_dir(cfg) / "export"
    out.mkdir(parents=True, exist_ok=True)
    feats_model = FeatureModel(module.normalizer, module.net).eval()
    wave_model = WaveModel(module.featurizer, feats_model).eval()
    waves, wave_lengths = (t.to(device) for t in _example(module, cfg.task.example_seconds))
    feats = tuple(t.to(device) for t in _features(module, waves, wave_lengths))
    io_feats = {"inputs": ["feats (B, T, F) float32", "feat_lengths (B,) int64"],
                "outputs": ["log_probs (B, T', V) float32", "out_lengths (B,) int64"]}
    io_wave = {**io_feats, "inputs": ["waves (B, S) float32", "wave_lengths (B,) int64"]}
    files: dict[str, Any] = {}
    with torch.no_grad():
        if "torchscript" in formats:
            diff = export_torchscript(feats_model, feats, out / "model.ts")
            files["model.ts"] = {**io_feats, "check_max_abs_diff": diff}
            if cfg.task.waveform_model:
                diff = export_torchscript(wave_model, (waves, wave_lengths), out / "model_wave.ts")
                files["model_wave.ts"] = {**io_wave, "check_max_abs_diff": diff}
        if "onnx" in formats and not _has_onnx():
            log.warning("ONNX export skipped: the onnx package is not installed (pip install onnx onnxruntime)")
        elif "onnx" in formats:
            diff = export_onnx(feats_model, feats, out / "model.onnx", cfg.task.onnx_opset)
            files["model.onnx"] = {**io_feats, "opset": cfg.task.onnx_opset, "check_max_abs_diff": diff}
    description = _description(module, checkpoint, files)
    (out / "export.json").write_text(json.dumps(description, ensure_ascii=False, indent=2), encoding="utf-8")
    for name, info in files.items():
        diff = info["check_max_abs_diff"]
        log.info("exported %s (max abs difference to the checkpoint: %s)", out / name,
                 "not checked, onnxruntime missing" if diff is None else f"{diff:.2e}")
    log.info("wrote %s", out / "export.json")
