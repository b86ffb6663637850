"""A logging handler that writes through tqdm, so log lines and progress bars don't tear each other."""

from __future__ import annotations

import logging

from tqdm import tqdm


class TqdmHandler(logging.StreamHandler):
    """Console handler for Hydra's job logging; ``tqdm.write`` keeps any active bar intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging must never raise into training
            self.handleError(record)
