"""Wall time of one per-epoch test pass with greedy decoding and with the configured decoder.

    .venv/bin/python scripts/per_epoch_test_cost.py --utterances 100 experiment=demo decoder=beam_search

Runs the training task's test pass (Trainer.validate on the same module and data module) on the first
``--utterances`` of test_manifest, with an untrained model unless ``--checkpoint`` gives one (an untrained
model's flat posteriors are the beam search's worst case). Figures: docs/per_epoch_test.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir

from lit_asr.data.manifest import read_manifest, write_manifest
from lit_asr.models.loading import load_module
from lit_asr.tasks.train import build_parts, build_test_decoder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--checkpoint", help="model.ckpt whose weights to use (default: untrained)")
    parser.add_argument("overrides", nargs="*", help="run.py overrides, e.g. experiment=demo decoder=beam_search")
    args = parser.parse_args()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "manifest.test"
        write_manifest(subset, read_manifest(cfg.test_manifest)[0][: args.utterances])
        cfg.test_manifest = str(subset)
        module, datamodule = build_parts(cfg)
        if args.checkpoint:
            module.load_state_dict(load_module(args.checkpoint).state_dict())
        t0 = time.monotonic()
        decoder = build_test_decoder(cfg, module)
        print(f"decoder setup (LM load): {time.monotonic() - t0:.2f} s")
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, use_distributed_sampler=False)
        for name, chosen in (("greedy", None), (type(decoder).__name__, decoder), ("greedy again", None)):
            module.decoder = chosen
            t0 = time.monotonic()
            metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
            print(f"{name}: {time.monotonic() - t0:.2f} s, val/cer {metrics['val/cer']:.4f}")
        datamodule.close_workers()
        if decoder is not None:
            decoder.close()


if __name__ == "__main__":
    main()
