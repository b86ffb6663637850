"""Serving: load the checkpoint and decoder once, then answer HTTP and WebSocket requests (docs/serve.md)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from lit_asr.serve.settings import ServeSettings
from lit_asr.utils.checkpoints import checkpoint_to_evaluate

log = logging.getLogger("lit_asr")


def run(cfg: DictConfig) -> None:
    """Serve ``resume_model`` (else last_model of ``use_model``) on ``serve.host:serve.port`` until stopped."""
    from lit_asr.inference.recognizer import Recognizer
    from lit_asr.serve.app import create_app
    from lit_asr.serve.server import serve_forever

    settings = ServeSettings.from_config(OmegaConf.to_container(cfg.serve, resolve=True))
    recognizer = Recognizer.from_config(cfg, checkpoint_to_evaluate(cfg))
    try:
        app = create_app(recognizer, settings)
        shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
        log.info("serving on http://%s:%d/ (page, POST /v1/transcribe, WS /v1/stream, /health, /metrics)",
                 shown, settings.port)
        serve_forever(app, settings)
        log.info("stopped")
    finally:
        recognizer.close()
