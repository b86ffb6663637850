"""One training epoch of MASR 3.0.3's DeepSpeech2, timed: MASR's half of scripts/compare_masr.sh.

Runs in MASR's own virtualenv (the one compare_masr.sh makes), so it imports nothing from lit-asr. Steps, all
inside --workdir: MASR's manifests (sorted by duration, as MASR's create_data writes them: its SortaGrad first
epoch takes the manifest's order), MASR's character vocabulary and mean/istd (its own data preparation, as in
MASRTrainer.create_data), a config derived from MASR's deepspeech2.yml, then MASRTrainer.train for one epoch.
The epoch's training loop is timed (start-up and the test pass are not) and written as JSON to --output.

Two shims make MASR 3.0.3 run with torch 2.11 and sentencepiece 0.2; both are applied here, at run time, so
nothing in the virtualenv is edited:
* masr.model_utils imports ``Union`` and ``Optional`` from ``torch.nn.modules.conv`` (squeezeformer/conv2d.py);
  torch 2.11 no longer has them there, so they are put back from ``typing`` before masr is imported.
* MASRTokenizer passes ``input_sentence_size=1e8`` (a float) to SentencePieceTrainer, which sentencepiece 0.2
  rejects; MASRTokenizer lets its keyword arguments override that default, so the config passes an int.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from pathlib import Path

import torch
import torch.nn.modules.conv

for _name in ("Union", "Optional"):  # shim 1 (see above); a no-op on torch versions that still have them
    if not hasattr(torch.nn.modules.conv, _name):
        setattr(torch.nn.modules.conv, _name, getattr(typing, _name))

import masr  # noqa: E402  (after the shim)
import yaml  # noqa: E402
from masr.data_utils.normalizer import FeatureNormalizer  # noqa: E402
from masr.data_utils.tokenizer import MASRTokenizer  # noqa: E402
from masr.trainer import MASRTrainer  # noqa: E402


def write_masr_manifest(source: Path, target: Path) -> int:
    """Copy a JSON-lines manifest keeping MASR's fields, sorted by duration as MASR's create_data sorts it."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: r["duration"])
    with open(target, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"audio_filepath": r["audio_filepath"], "duration": r["duration"],
                                "text": r["text"]}, ensure_ascii=False) + "\n")
    return len(rows)


def masr_config(args: argparse.Namespace, workdir: Path) -> dict:
    """MASR's own deepspeech2.yml, changed to the compared model and batch (see compare_masr.sh)."""
    config = yaml.safe_load((Path(masr.__file__).parent / "configs" / "deepspeech2.yml").read_text(encoding="utf-8"))
    config["encoder_conf"]["encoder_args"].update(num_rnn_layers=args.rnn_layers, rnn_size=args.rnn_size,
                                                  use_gru=True)
    config["model_conf"]["model_args"]["streaming"] = False  # MASR: not streaming = bidirectional RNNs
    data = config["dataset_conf"]
    data["dataset"].update(min_duration=args.min_duration, max_duration=args.max_duration)
    data["batch_sampler"]["batch_size"] = args.batch_size
    data["dataLoader"]["num_workers"] = args.num_workers
    data.update(train_manifest=str(workdir / "manifest.train"), test_manifest=str(workdir / "manifest.test"),
                mean_istd_path=str(workdir / "mean_istd.json"))
    config["preprocess_conf"] = {"feature_method": "fbank", "method_args": {"num_mel_bins": args.n_mels}}
    # Characters, like lit-asr's tokenizer=char; input_sentence_size as an int is shim 2 (see above).
    config["tokenizer_conf"].update(vocab_model_dir=str(workdir / "vocab_model"), model_type="char",
                                    build_vocab_size=None, input_sentence_size=100_000_000)
    config["train_conf"].update(max_epoch=1, accum_grad=1, log_interval=args.log_interval, enable_amp=False,
                                use_compile=False)
    return config


class CountingLoader:
    """Wraps MASR's training DataLoader: counts batches, utterances and feature frames, and the loader waits.

    ``start`` creates the loader's iterator (its workers) before the epoch's clock starts, as Lightning does for
    lit-asr, so neither side's epoch includes the workers' start-up.
    """

    def __init__(self, loader):
        self.loader = loader
        self.batches = self.utterances = self.frames = 0
        self.wait_s = 0.0
        self._iterator = None

    def __len__(self) -> int:
        return len(self.loader)

    def start(self) -> None:
        self._iterator = iter(self.loader)

    def __iter__(self):
        it, self._iterator = self._iterator or iter(self.loader), None
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait_s += time.perf_counter() - t0
            self.batches += 1
            self.utterances += int(batch[2].shape[0])
            self.frames += int(batch[2].sum())
            yield batch


def train_one_epoch(trainer: MASRTrainer, workdir: Path) -> dict:
    """MASRTrainer.train for its one epoch, with the epoch's loop (MASR's private ``__train_epoch``) timed."""
    epoch = trainer._MASRTrainer__train_epoch
    timing: dict = {}

    def timed_epoch(*args, **kwargs):
        counter = CountingLoader(trainer.train_loader)
        trainer.train_loader = counter
        counter.start()
        t0 = time.perf_counter()
        epoch(*args, **kwargs)
        timing["train_seconds"] = time.perf_counter() - t0
        trainer.train_loader = counter.loader
        timing["counter"] = counter
        timing["parameters"] = sum(p.numel() for p in trainer.model.parameters())

    trainer._MASRTrainer__train_epoch = timed_epoch
    trainer.train(save_model_path=str(workdir / "models"), log_dir=str(workdir / "log"))
    counter, seconds = timing["counter"], timing["train_seconds"]
    opts = trainer.audio_featurizer._method_opts.frame_opts
    audio_s = counter.frames * opts.frame_shift_ms / 1000
    return {
        "framework": f"MASR {masr.__version__}", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(trainer.device), "parameters": timing["parameters"], "batches": counter.batches,
        "utterances": counter.utterances, "audio_seconds": audio_s, "train_seconds": seconds,
        "data_wait_seconds": counter.wait_s, "utterances_per_second": counter.utterances / seconds,
        "audio_seconds_per_second": audio_s / seconds,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-manifest", required=True, type=Path)
    p.add_argument("--test-manifest", required=True, type=Path)
    p.add_argument("--workdir", required=True, type=Path, help="everything MASR writes goes here")
    p.add_argument("--output", required=True, type=Path, help="JSON with the epoch's figures")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--rnn-layers", type=int, default=3)
    p.add_argument("--rnn-size", type=int, default=256)
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--min-duration", type=float, default=0.5)
    p.add_argument("--max-duration", type=float, default=20.0)
    p.add_argument("--log-interval", type=int, default=100)
    p.add_argument("--use-gpu", action="store_true", help="train on CUDA (default: CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for split, source in (("train", args.train_manifest), ("test", args.test_manifest)):
        n = write_masr_manifest(source, workdir / f"manifest.{split}")
        print(f"MASR manifest.{split}: {n} utterances, sorted by duration", flush=True)
    config_path = workdir / "deepspeech2.yml"
    config_path.write_text(yaml.safe_dump(masr_config(args, workdir), allow_unicode=True), encoding="utf-8")
    trainer = MASRTrainer(configs=str(config_path), use_gpu=args.use_gpu)
    configs = trainer.configs
    # MASR's own data preparation (what MASRTrainer.create_data does after writing the manifests).
    t0 = time.perf_counter()
    FeatureNormalizer(mean_istd_filepath=configs.dataset_conf.mean_istd_path).compute_mean_istd(
        preprocess_conf=configs.preprocess_conf, manifest_path=configs.dataset_conf.train_manifest,
        data_loader_conf=configs.dataset_conf.dataLoader, num_samples=-1)
    MASRTokenizer(is_build_vocab=True, **configs.tokenizer_conf).build_vocab(
        manifest_paths=[configs.dataset_conf.train_manifest, configs.dataset_conf.test_manifest])
    prepare_s = time.perf_counter() - t0
    result = train_one_epoch(trainer, workdir)
    result.update(prepare_seconds=prepare_s, config=str(config_path))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
