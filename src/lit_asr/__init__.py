"""lit-asr: end-to-end speech recognition training on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
