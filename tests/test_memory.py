"""aspects.memory: NumPy's huge-page advice off, a warm server's per-study peak RSS and the heap
it hands back between studies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from aspects.memory import peak_rss_mb, release_heap, reset_peak_rss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and glibc")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS:"))


def test_the_peak_is_the_current_studys_not_an_earlier_ones():
    if not reset_peak_rss():
        pytest.skip("/proc/self/clear_refs is not writable here")
    big = np.ones(300 * 2**20 // 8)  # an earlier study's 300 MB peak
    assert peak_rss_mb() >= _rss_mb() - 8 >= 250  # 8 MB: the two reads are moments apart
    del big
    release_heap()
    reset_peak_rss()
    small = np.ones(50 * 2**20 // 8)  # this study's 50 MB
    peak = peak_rss_mb()
    assert _rss_mb() - 8 <= peak < _rss_mb() + 100, "the reset peak still carries the earlier 300 MB"
    del small


def test_freed_small_allocations_go_back_to_the_system():
    # many arrays under glibc's mmap threshold live in the heap, which free() alone does not shrink
    before = _rss_mb()
    arrays = [np.ones(8 * 1024) for _ in range(4000)]  # 4000 x 64 KB: 256 MB of heap chunks
    held = _rss_mb()
    del arrays
    assert release_heap(trim=False) is False  # garbage collection only
    assert release_heap() is True
    assert _rss_mb() < before + 0.2 * (held - before)


def _advice_after(code: str, env_value: Optional[str]) -> str:
    """What a fresh interpreter prints after ``code``; the last line asks NumPy's switch for its
    previous value (True: NumPy still advises huge pages)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    probe = code + "\nimport numpy\nprint(r, numpy._core.multiarray._set_madvise_hugepage(True))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.split()[-2] + " " + out.stdout.split()[-1]


def test_numpy_huge_page_advice_is_off_before_and_after_numpy_is_imported():
    before = "from aspects.memory import no_numpy_hugepages\nr = no_numpy_hugepages()"
    after = "import numpy\nfrom aspects.memory import no_numpy_hugepages\nr = no_numpy_hugepages()"
    assert _advice_after(before, None) == "True False"
    assert _advice_after(after, None) == "True False"
    assert _advice_after("r = None", None) == "None True", "NumPy's own default (the advice) on this kernel"
    assert _advice_after("import aspects_research.tools.evaluate\nr = 'tools'", None) == "tools False"


def test_an_explicit_numpy_madvise_hugepage_is_kept():
    before = "from aspects.memory import no_numpy_hugepages\nr = no_numpy_hugepages()"
    assert _advice_after(before, "1") == "False True"
