"""Memory of a server process: glibc malloc tuning, and the start-up heap kept out of the
garbage collector's full passes.

**malloc** (set by the process itself at start; a no-op off glibc: musl, macOS).

glibc serves a block of at least its mmap threshold (128 KiB at start) with a mapping of its
own, returned to the system on free. The threshold is dynamic, though: the first free of such a
block raises it to that block's size (up to 32 MiB). A login hashes with argon2id at the OWASP
minimum, 19 MiB: after the first hash is freed, every later 19 MiB block comes from the heap of
the hashing thread's arena, and the heap keeps it after free, so an API worker that served one
login holds 19 MiB more for good (one block per hashing thread).

Setting the threshold explicitly turns the dynamic adjustment off: blocks of
`MMAP_THRESHOLD_BYTES` and more are always mapped and returned on free; smaller ones come from
the heap as before (the hot paths allocate nothing that large per request). An operator's own
setting wins: with `MALLOC_MMAP_THRESHOLD_` or a `glibc.malloc.mmap_threshold` tunable in the
environment (read by glibc at start), nothing is changed.

**The start-up heap.** Importing the app leaves ~300,000 objects the garbage collector tracks
(modules, functions, classes, pydantic and SQLAlchemy structures) that live as long as the
process. Every full (generation 2) collection walks all of them: ~100-200 ms with the event loop
stopped, every few dozen requests that allocate much (a batch of 1,000 codes). A server process
(`sellerdesk serve`: `sellerdesk.server` calls `freeze_heap_after_start`) moves what exists once
the app has started into the collector's permanent generation (`gc.freeze`), after one last
collection: later full passes walk only what requests created. Tests and other embedders that
build many apps in one process leave it off.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

# mallopt(3) parameter numbers (malloc.h).
M_MMAP_THRESHOLD = -3
# At least this many bytes: a mapping of its own, returned to the system on free.
MMAP_THRESHOLD_BYTES = 1024 * 1024

_tuned = False
_freeze_after_start = False


def _glibc() -> Any | None:
    """The C library when it is glibc (it exports `gnu_get_libc_version`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (AttributeError on musl)
    except (OSError, AttributeError):
        return None
    return libc


def _operator_set_threshold(environ: Mapping[str, str]) -> bool:
    return "MALLOC_MMAP_THRESHOLD_" in environ or "glibc.malloc.mmap_threshold" in environ.get(
        "GLIBC_TUNABLES", ""
    )


def tune_malloc(
    environ: Mapping[str, str] | None = None, load_libc: Callable[[], Any | None] = _glibc
) -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`; True when this call set it.

    Idempotent. False (nothing changed) off glibc, when the operator set the threshold in the
    environment, when it was already set here, or when mallopt refuses.
    """
    global _tuned
    if _tuned or _operator_set_threshold(os.environ if environ is None else environ):
        return False
    libc = load_libc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on error.
    _tuned = bool(libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES)))
    return _tuned


def freeze_heap_after_start() -> None:
    """Ask `heap_started` to freeze the heap once the app has started (server processes)."""
    global _freeze_after_start
    _freeze_after_start = True


def heap_started() -> bool:
    """Called when the app has started: freeze what exists (see above) if this is a server
    process; True when it did."""
    if not _freeze_after_start:
        return False
    gc.collect()
    gc.freeze()
    return True
