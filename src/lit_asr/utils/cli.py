"""The shared shell of the scripts in scripts/: user errors become one line on stderr, never a traceback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from lit_asr.errors import LitAsrError


def run_cli(job: Callable[[], object]) -> int:
    """Run ``job``; exit status 0, 2 for a user error (``error: ...``), 130 when interrupted."""
    start = time.perf_counter()
    try:
        job()
    except LitAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
