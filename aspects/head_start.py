"""The study's first stages, started as the app process starts, before the heavy imports.

``python app.py`` used to import the MONAI Deploy SDK, torch (which the SDK imports) and
highdicom before reading a file: ~4.5 s of a 5 mm study on the 2-core CPU, all of it on the
critical path (docs/performance.md). The front of the graph (scan, series selection, HU volume,
preprocessing) needs none of them, and the registration inside preprocessing runs in a forked
child (:mod:`aspects.registration`) during which the app process has nothing to do.

:func:`start_from_argv` therefore runs those stages in a thread (the same functions the operators
call, on the same input) and returns once the first registration child runs, or the stages have
ended (an error included); ``app.py`` then imports the rest while ANTs works. The operators take
the results from the :class:`HeadStart` they are given (``HeadStart.take``) when their input is
the head start's own (same folder, same rules and atlas, the very object it produced), so every
result, and every error (re-raised by the operator that would have raised it), is the one the
operator would have computed; with no head start (tests, the warm server) they compute as before.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from aspects import timings
from aspects.app_logging import LOG_FORMAT, console_policy
from aspects.atlas import Atlas, LazyAtlas

log = logging.getLogger(__name__)
STAGES = ("scan", "selection", "series", "preprocessed")
_DROPPED: Future = Future()  # a stage's result handed over: the head start no longer holds it
_DROPPED.set_exception(LookupError("handed over to the app"))


class HeadStart:
    """Scan, select, load and preprocess one study folder in a thread (:meth:`start`).

    ``atlas`` is shared with the app (the preprocess and region operators get the same object);
    ``rules``: the series-selection rules (default: config/series_selection.json).
    """

    def __init__(self, input_folder: Path, atlas: Callable[[], Atlas], rules: Optional[dict] = None):
        from aspects.selection import load_rules

        self.input_folder = Path(input_folder)
        self.atlas = atlas
        self.rules = rules if rules is not None else load_rules()
        self._results: Dict[str, Future] = {stage: Future() for stage in STAGES}
        self._cancelled = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.warm_up: Optional[threading.Thread] = None

    def start(self) -> HeadStart:
        """The stages in a daemon thread, the warm-up (ANTs import, atlas, aligned template) in
        another, as the app did beside the DICOM reading."""
        from aspects.registration import CHILD_STARTED
        from aspects.warmup import warm_up_in_background

        CHILD_STARTED.clear()  # this head start's registration is the one waited for
        self.warm_up = warm_up_in_background(self.atlas)
        self.thread = threading.Thread(target=self._run, name="head-start", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        from aspects.dicom_input import scan_folder
        from aspects.preprocess import preprocess_series
        from aspects.series import choose_series, load_series

        steps: Sequence[Callable[[Any], Any]] = (
            lambda _: _timed_scan(scan_folder, self.input_folder),
            lambda scan: choose_series(scan, self.rules),
            load_series,
            lambda series: preprocess_series(series, self.atlas()),
        )
        futures = [self._results[stage] for stage in STAGES]  # after() may drop the dictionary's
        value: Any = None
        for i, (future, step) in enumerate(zip(futures, steps)):
            if self._cancelled.is_set():  # a taker of the stages not run gets CancelledError, never waits
                for pending in futures[i:]:
                    pending.cancel()
                return
            try:
                value = step(value)
            except BaseException as exc:  # the operator that needs this stage raises it
                future.set_exception(exc)
                return
            future.set_result(value)

    def wait_until_registering(self) -> None:
        """Return when a registration child runs or the stages have ended (done or failed)."""
        from aspects.registration import CHILD_STARTED

        assert self.thread is not None, "start() first"
        while self.thread.is_alive() and not CHILD_STARTED.wait(0.02):
            pass

    def take(self, stage: str) -> Any:
        """The result of ``stage`` (waits for it); its error is raised here."""
        return self._results[stage].result()

    def after(self, stage: str, given: Any) -> Optional[Future]:
        """The next stage's result, as a done or pending Future, when ``given`` is this head
        start's own result of ``stage`` (identity), else None. The head start then keeps no
        reference to ``given`` (nor to the last stage's result): the app holds what it still
        needs, and frees it as it would without a head start (the thin study's HU volume, 320 MB,
        once scored)."""
        done = self._results[stage]
        if not (done.done() and not done.cancelled() and done.exception() is None and done.result() is given):
            return None
        nxt = STAGES[STAGES.index(stage) + 1]
        following = self._results[nxt]
        self._results[stage] = _DROPPED
        if nxt == STAGES[-1]:  # nobody checks the last stage's result
            self._results[nxt] = _DROPPED
        return following

    def cancel(self, wait: bool = True) -> None:
        """No further stage starts (the one running finishes; the others' results raise
        CancelledError); ``wait``: return after the threads end."""
        self._cancelled.set()
        for thread in (self.thread, self.warm_up):
            if wait and thread is not None:
                thread.join()


def result_after(head: Optional[HeadStart], stage: str, given: Any, compute: Callable[[Any], Any]) -> Any:
    """An operator's result for its input ``given`` (``stage``'s result): the head start's next
    stage when ``given`` is its own (:meth:`HeadStart.after`), else ``compute(given)``."""
    ahead = head.after(stage, given) if head is not None else None
    return ahead.result() if ahead is not None else compute(given)


def _timed_scan(scan_folder: Callable[[Path], Any], folder: Path) -> Any:
    with timings.timed("scan"):
        return scan_folder(folder)


class EarlyLog(logging.handlers.MemoryHandler):
    """The head start's log records (DEBUG and up) kept until the app opens OUTPUT/app.log."""

    def __init__(self) -> None:
        super().__init__(capacity=1 << 20, flushLevel=logging.CRITICAL + 1)
        self.setLevel(logging.DEBUG)

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return self.target is not None

    def hand_over(self, target: logging.Handler) -> None:
        """Write the kept records to ``target`` and stop keeping records."""
        logging.getLogger().removeHandler(self)
        self.setTarget(target)
        self.flush()
        self.close()


def input_folder_from_argv(argv: Sequence[str]) -> Optional[Path]:
    """The study folder the app will read: ``-i``/``--input``, else $HOLOSCAN_INPUT_PATH (as
    ``app._paths``); None for ``--help`` or when neither is given (no head start then)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-i", "--input")
    p.add_argument("-h", "--help", action="store_true")
    try:
        args, _ = p.parse_known_args(list(argv[1:]))
    except SystemExit:  # a malformed command line: the app's own parser reports it
        return None
    if args.help:
        return None
    folder = args.input or os.environ.get("HOLOSCAN_INPUT_PATH")
    return Path(folder) if folder else None


def start_from_argv(argv: Sequence[str]) -> Optional[HeadStart]:
    """For ``app.py`` as ``__main__``, before its heavy imports: the console log set up as the app
    sets it, the early records kept for app.log (:class:`EarlyLog`, root logger), the run's stage
    timings reset, and a :class:`HeadStart` on the input folder, returned once its registration
    runs. None (nothing started) without an input folder."""
    folder = input_folder_from_argv(argv)
    if folder is None:
        return None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    console_policy()
    logging.getLogger().addHandler(EarlyLog())
    timings.reset()
    head = HeadStart(folder, LazyAtlas()).start()
    head.wait_until_registering()
    return head
