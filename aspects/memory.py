"""Process memory: no transparent-huge-page advice from NumPy (:func:`no_numpy_hugepages`); between
studies of a warm server, hand freed heap back to the system, and measure one study's peak
resident set instead of the process's lifetime maximum.

glibc keeps memory that Python and NumPy have freed in its arenas, so a warm process still holds
much of the last study's peak when the next one starts (a thin study's arrays are 0.3-1 GB), and
its peaks stack; ``malloc_trim(0)`` returns the free pages. Linux keeps a resettable high-water
mark of the resident set (``VmHWM`` in ``/proc/self/status``, reset by writing ``5`` to
``/proc/self/clear_refs``), which gives a per-study peak in a long-lived process; elsewhere the
figures fall back to ``getrusage``'s lifetime maximum.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import sys
from pathlib import Path
from typing import Any, Optional

HUGEPAGE_ENV = "NUMPY_MADVISE_HUGEPAGE"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_libc: Optional[Any] = None


def _malloc_trim() -> Optional[Any]:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return getattr(_libc, "malloc_trim", None) if _libc else None


def no_numpy_hugepages() -> bool:
    """Stop NumPy asking Linux for transparent huge pages, unless $NUMPY_MADVISE_HUGEPAGE says
    otherwise; True when its advice is off. Call it before NumPy is imported (NumPy reads the
    variable then, and child processes inherit it); after, NumPy's run-time switch is used.

    NumPy advises ``madvise(MADV_HUGEPAGE)`` on every array of 4 MB and more. Where the kernel's
    THP setting is ``madvise`` with ``defrag`` ``madvise`` (Debian's and Ubuntu's default), each
    fault in such an array may compact memory synchronously first: on the 2-core CI host the
    app's large temporaries took 10-20x their computing time (the scanned field 0.85 s for
    0.1 s), and a 0.625 mm study 22.2 s instead of 16.6 s (docs/performance.md, session 22).
    The answers do not change: only how the kernel backs the pages."""
    os.environ.setdefault(HUGEPAGE_ENV, "0")
    if os.environ[HUGEPAGE_ENV] != "0":
        return False
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # imported already: its variable was read; use the switch it reads it into
        core = getattr(numpy, "_core", None) or getattr(numpy, "core", None)
        switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
        if switch is None:
            return False
        switch(False)
    return True


def release_heap(trim: bool = True) -> bool:
    """Collect garbage and (``trim``) return the allocator's free pages to the system (glibc
    ``malloc_trim``); True when the allocator was trimmed."""
    gc.collect()
    malloc_trim = _malloc_trim() if trim else None
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


def reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux ``clear_refs``); False where it cannot be reset."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set (MB) since the last :func:`reset_peak_rss` (``VmHWM``), else the
    process's lifetime maximum (``ru_maxrss``)."""
    try:
        kb = {line.split(":")[0]: int(line.split()[1]) for line in _STATUS.read_text().splitlines()
              if line.startswith(("VmHWM:", "VmRSS:"))}
        # the kernel syncs its RSS counters lazily: the mark can trail the current RSS by a few pages
        return max(kb["VmHWM"], kb.get("VmRSS", 0)) / 1024.0
    except (OSError, ValueError, IndexError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
