"""pin_mmap_threshold: after a big block is freed, glibc still serves the next big request with mmap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = """
import ctypes, sys
sys.path.insert(0, {src!r})
from lit_asr.utils.malloc import pin_mmap_threshold
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                               "fordblks keepcost").split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
print(pin_mmap_threshold({threshold}))
libc.free(ctypes.c_void_p(libc.malloc(8 << 20)))  # an 8 MiB block, mmapped and freed: glibc raises its threshold
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblkhd >= 1 << 20)  # is the next 1 MiB block mmapped (returned to the system on free)?
"""


def probe(threshold: int | None) -> list[str]:
    code = PROBE.format(src=str(SRC), threshold=threshold)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator only")
def test_pinned_threshold_keeps_big_blocks_out_of_the_heap():
    assert probe(None) == ["False", "False"]  # glibc's default: the 1 MiB block now comes from the heap
    assert probe(128 * 1024) == ["True", "True"]
