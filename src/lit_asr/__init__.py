"""lit-asr: end-to-end speech recognition training on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # lit_asr.Recognizer without importing torch and Lightning for every ``import lit_asr``
    if name == "Recognizer":
        from lit_asr.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'lit_asr' has no attribute {name!r}")
