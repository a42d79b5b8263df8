"""Per-stage wall times of the current run, for aspects.json and the log. One run at a time per
process: a run starts with :func:`reset` (a warm server runs studies one after the other)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator

_STAGES: Dict[str, float] = {}


def reset() -> None:
    _STAGES.clear()


def record(stage: str, seconds: float) -> None:
    _STAGES[stage] = _STAGES.get(stage, 0.0) + float(seconds)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - t0)


def snapshot() -> Dict[str, float]:
    return {k: round(v, 3) for k, v in _STAGES.items()}
