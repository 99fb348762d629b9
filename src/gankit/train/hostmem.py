"""Host memory allocator tuning for CPU training (glibc).

A CPU training step of these networks allocates and frees activation and gradient
buffers of several megabytes each. With glibc's defaults, large freed blocks are handed
back to the operating system (``munmap`` / heap trimming), and the next step's
allocations fault every page back in, zero-filled by the kernel: on the 2-core machine of
``docs/performance.rst`` that costs 10-15% of a faithful task-one step. Keeping freed
memory in the process removes that cost and changes no number (the same kernels run on
the same data; PyTorch aligns its CPU buffers to 64 bytes either way).

:func:`tune_host_allocator` sets two ``mallopt`` parameters for the whole process, the
same as starting Python with ``MALLOC_MMAP_THRESHOLD_=33554432`` and
``MALLOC_TRIM_THRESHOLD_=2147483647``: blocks up to 32 MiB come from the heap, and the
heap is not trimmed. The process keeps its peak host memory instead of returning it
between steps. :class:`gankit.Trainer` calls it unless ``tune_malloc=False``; the
environment variable ``GANKIT_TUNE_MALLOC=0`` turns it off everywhere.

:func:`share_main_arena` (``MALLOC_ARENA_MAX=1``) makes threads started afterwards allocate
from the main heap too. A :class:`~gankit.train.MultiTrainer` trains its members in threads
that run one at a time: in glibc's per-thread arenas (heaps of at most 64 MiB, unmapped
when empty) their buffers would fault in again every step, and a member ran about 10%
slower than the same run in the main thread (measured on the 2-core machine of
``docs/sweeps.rst``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_host_allocator", "share_main_arena"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int

_applied: bool | None = None


def _glibc():
    """glibc, when allocator tuning applies here (Linux, glibc, not ``GANKIT_TUNE_MALLOC=0``); else None."""
    if os.environ.get("GANKIT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has no such symbol)
    except (OSError, AttributeError):
        return None
    return libc


def tune_host_allocator() -> bool:
    """Keep freed host memory for reuse (glibc only; once per process).

    Returns:
        True when the settings are in force (now or from an earlier call); False on other
        C libraries (macOS, Windows, musl), when ``GANKIT_TUNE_MALLOC=0``, or when glibc
        refused them.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _applied = ok
    return ok


_shared: bool | None = None


def share_main_arena() -> bool:
    """Let every thread started from now on allocate from glibc's main arena (once per process).

    Returns:
        True when in force; False on other C libraries or with ``GANKIT_TUNE_MALLOC=0``.
    """
    global _shared
    if _shared is not None:
        return _shared
    libc = _glibc()
    _shared = libc is not None and libc.mallopt(_M_ARENA_MAX, 1) == 1
    return _shared
