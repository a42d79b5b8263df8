"""Ignite handler that ends training before an epoch that would overrun a wall-clock budget.

A GPU host of the project's device pool runs one command for at most 10 minutes, and what the
command leaves under ``$OUT`` comes back only if it ends in time; a bundle run there has to stop
by itself, on an epoch boundary, with its checkpoints written (``aspects_research.tools.gpu_train``).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, List, Optional

log = logging.getLogger(__name__)


def should_stop(elapsed_s: float, epoch_seconds: List[float], budget_s: float, margin: float = 1.2) -> bool:
    """True when one more epoch, as long as the longest so far times ``margin``, would end after
    ``budget_s`` (validation epochs are the longest, so the longest is the safe guess)."""
    if not epoch_seconds:
        return elapsed_s >= budget_s
    return elapsed_s + margin * max(epoch_seconds) > budget_s


def epochs_that_fit(budget_s: float, epoch_seconds: List[float], margin: float = 1.05) -> int:
    """How many epochs at the mean rate so far fit in ``budget_s`` (at least 1)."""
    mean = sum(epoch_seconds) / max(len(epoch_seconds), 1)
    return max(1, int(budget_s / (margin * mean))) if mean > 0 else 1


class TimeBudget:
    """Stop the trainer at the end of the epoch after which another would overrun ``minutes``.

    Attach to the trainer after the ``ValidationHandler`` and the checkpoint saver, so that the
    epoch's validation and checkpoint count in its time and are written before the stop.

    ``scheduler`` (a cosine schedule, anything with ``T_max``): after ``fit_after`` epochs (the
    validation interval, so that a validation is in the mean), its length is cut to the epochs
    that fit the budget, so the learning rate anneals to its minimum before the stop instead of
    being cut off high. ``clock`` is injectable for tests.
    """

    def __init__(self, minutes: float, margin: float = 1.2, clock: Callable[[], float] = time.monotonic,
                 scheduler=None, fit_after: int = 1):
        if minutes <= 0:
            raise ValueError(f"time budget must be positive, got {minutes} minutes")
        self.budget_s, self.margin, self.clock = 60.0 * float(minutes), float(margin), clock
        self.scheduler, self.fit_after = scheduler, max(1, int(fit_after))
        self.fitted_epochs: Optional[int] = None
        self.epoch_seconds: List[float] = []
        self.stopped_early = False
        self._start: Optional[float] = None
        self._epoch_start: Optional[float] = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine=None) -> None:
        self._start = self.clock()

    def epoch_started(self, engine=None) -> None:
        self._epoch_start = self.clock()

    def epoch_completed(self, engine) -> None:
        now = self.clock()
        if self._start is None:
            self._start = self._epoch_start if self._epoch_start is not None else now
        if self._epoch_start is not None:
            self.epoch_seconds.append(now - self._epoch_start)
        elapsed = now - self._start
        if self.scheduler is not None and self.fitted_epochs is None and len(self.epoch_seconds) >= self.fit_after:
            self.fitted_epochs = epochs_that_fit(self.budget_s, self.epoch_seconds)
            if self.fitted_epochs < getattr(self.scheduler, "T_max", 0):
                log.info("time budget: learning-rate schedule cut from %d to %d epochs",
                         self.scheduler.T_max, self.fitted_epochs)
                self.scheduler.T_max = self.fitted_epochs
        if should_stop(elapsed, self.epoch_seconds, self.budget_s, self.margin):
            self.stopped_early = True
            log.info("time budget: stopping after epoch %d (%.0f s of %.0f s; longest epoch %.1f s)",
                     engine.state.epoch, elapsed, self.budget_s, max(self.epoch_seconds, default=0.0))
            engine.terminate()
