"""lit-asr entry point: compose the Hydra config and run ``task`` (train, eval, infer, export)."""

from __future__ import annotations

import sys
from pathlib import Path

from lit_asr.utils.allocator import reexec_with_allocator

if __name__ == "__main__":  # before torch allocates anything (src/lit_asr/utils/allocator.py says why)
    reexec_with_allocator(Path(__file__).resolve().parent / "conf" / "config.yaml")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from lit_asr.tasks import dispatch  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the configured task; its return value (e.g. CER) is what a Hydra sweeper optimises."""
    return dispatch(cfg)


if __name__ == "__main__":
    sys.exit(main())
