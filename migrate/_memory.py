# -*- test-case-name: tests.test_hostile.MemoryBudgetTests -*-
"""
Giving freed memory back to the system.

CPython frees a session's buffers into the C library's heap, and glibc gives
back to the system only the top of that heap: after a burst (a flood that
filled sessions to their cap, then ended), hundreds of MiB can stay resident
although free, until C{malloc_trim} hands them back.  Elsewhere (other C
libraries, other systems) there is nothing to do.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Callable, Optional


def _loadTrim() -> Optional[Callable[[int], Any]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim



_trim = _loadTrim()


def releaseFreedMemory() -> bool:
    """
    Give the C library's free heap back to the system (glibc's
    C{malloc_trim(0)}, a few milliseconds).

    @return: whether there was anything to call.
    """
    if _trim is None:
        return False
    _trim(0)
    return True
