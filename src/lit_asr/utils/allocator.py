"""Start run.py on tcmalloc: training memory stays flat and the step stays fast.

glibc's allocator fits neither need of CPU training with ever-changing batch shapes: by default it raises its mmap
threshold after the first big frees, so activation tensors come from the heap, which fragments and grows epoch
after epoch (2.6 GB resident after 150 demo steps); pinning the threshold keeps memory flat but maps and zeroes
every big tensor afresh (110,000 page faults a second, a third of the CPU in the kernel, 1.5x slower steps).
tcmalloc reuses freed memory of any size without either cost (docs/benchmarks.md, section 1b). It has to be in
the process before anything allocates, so run.py re-executes itself once with the library in ``LD_PRELOAD``;
loader workers and DDP ranks inherit it.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import OmegaConf

# allocator -> (library name for the dynamic loader, Debian package that ships it)
ALLOCATORS = {"tcmalloc": ("tcmalloc_minimal", "libtcmalloc-minimal4"), "jemalloc": ("jemalloc", "libjemalloc2")}
SYSTEM = "system"
_MARK = "LIT_ASR_ALLOCATOR"  # set on the re-executed process, so it never re-executes again


def requested_allocator(argv: Sequence[str], config_file: Path) -> str:
    """The ``allocator`` a run asks for: a command-line ``allocator=X`` override, else ``config_file``'s default."""
    for arg in reversed(argv):
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "allocator":
            return value.strip("'\"") or SYSTEM
    default = OmegaConf.load(config_file).get("allocator") if config_file.is_file() else None
    return str(default) if default not in (None, "null") else SYSTEM


def library_path(allocator: str) -> str | None:
    """The shared library of ``allocator`` as the dynamic loader finds it, or None."""
    return ctypes.util.find_library(ALLOCATORS[allocator][0]) if allocator in ALLOCATORS else None


def preload_env(allocator: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with so ``allocator`` is preloaded; None when nothing is to be done."""
    if allocator == SYSTEM or environ.get(_MARK):
        return None
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator={allocator}: expected one of {', '.join([SYSTEM, *ALLOCATORS])}")
    library = library_path(allocator)
    if library is None:
        name, package = ALLOCATORS[allocator]
        print(f"warning: allocator={allocator}: lib{name} not found (apt-get install {package});"
              " using the system allocator", file=sys.stderr)
        return None
    preload = " ".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, _MARK: allocator}


def reexec_with_allocator(config_file: Path) -> None:
    """Replace this process by itself with the configured allocator preloaded (returns when there is none)."""
    try:
        env = preload_env(requested_allocator(sys.argv[1:], config_file), os.environ)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
