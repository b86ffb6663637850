"""glibc allocator setting that keeps training memory flat.

glibc serves a request of at least its *mmap threshold* (128 KiB at start) with a fresh mmap and returns it to
the system when freed, but it raises that threshold to the size of every mmapped block freed (up to 32 MiB).
Training frees activation tensors of a few MiB every step, so after the first step nearly all of them come
from the heap instead, and since every batch has another shape the heap fragments and keeps growing, epoch
after epoch (docs/benchmarks.md, "Round 2"). Setting the threshold explicitly switches that adjustment off;
forked DataLoader workers inherit the setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h


def pin_mmap_threshold(nbytes: int | None) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (None: leave the allocator as it is); False where not glibc."""
    if nbytes is None:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: no glibc allocator to tune
        log.debug("malloc_mmap_threshold: not a glibc allocator, left as it is")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
