"""lit-asr entry point: compose the Hydra config and run ``task`` (train, eval, infer, export)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from lit_asr.tasks import dispatch


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the configured task; its return value (e.g. CER) is what a Hydra sweeper optimises."""
    return dispatch(cfg)


if __name__ == "__main__":
    sys.exit(main())
