"""The process pool that beam-search decoders share: forked workers, Ctrl-C left to the parent, clean close."""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.pool import Pool


def _leave_ctrl_c_to_parent() -> None:
    """In a decoding worker: Ctrl-C reaches the whole process group, and stopping is the parent's decision.

    (SIGTERM stays deadly: it is how the pool itself ends its workers.)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PooledDecoder:
    """Base of decoders that decode in ``num_proc`` forked worker processes, started on first use.

    Fork, not spawn: the workers inherit the decoder and its language model without pickling them.
    """

    num_proc: int = 1
    _pool: Pool | None = None

    def _get_pool(self) -> Pool:
        if self._pool is None:
            self._pool = multiprocessing.get_context("fork").Pool(self.num_proc, initializer=_leave_ctrl_c_to_parent)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later decode starts new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
