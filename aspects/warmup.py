"""Work every run needs that does not depend on the study, done before or beside the study's reading.

:func:`warm_up` imports the parts of ANTs the registrations use
(:func:`aspects.registration.ants_module`), reads the atlas (:class:`aspects.atlas.LazyAtlas`: read
once, shared with the stages) and puts its template on the aligned grid
(:func:`aspects.preprocess.aligned_template`). The app starts it in a background thread so that it
overlaps the reading of the DICOM files; a warm server (:mod:`aspects.serve`) calls it once.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from aspects.atlas import Atlas

log = logging.getLogger(__name__)


def warm_up(atlas: Callable[[], Atlas]) -> None:
    """Import ANTs, read the atlas and build its aligned-grid template (errors propagate)."""
    from aspects.preprocess import aligned_template
    from aspects.registration import ants_module

    ants_module()  # the registrations' library: its import is the cost

    aligned_template(atlas())


def warm_up_writers() -> None:
    """Read highdicom's tables of the DICOM standard (SOP class -> IOD -> modules -> attributes,
    JSON read on first use and cached for the process): otherwise the first key image or SEG
    of a run reads them, 0.36 s of a 5 mm study's critical path after the infarct stage
    (2026-12-02, docs/performance.md). Likewise PIL's PNG plugin, which the first key image's PNG
    imported (0.2-0.3 s, 2026-12-04). Private highdicom functions: where a version lacks them
    nothing is read ahead and the writers read the tables themselves, as before."""
    from PIL import PngImagePlugin  # noqa: F401  # read on the first PNG save: 0.2-0.3 s of a key image

    try:
        from highdicom import _standard_utils as standard
    except ImportError:
        return
    for name in ("get_sop_class_iod_map", "get_iod_module_map", "get_module_attribute_map"):
        table = getattr(standard, name, None)
        if callable(table):
            table()


def warm_up_writers_in_background() -> threading.Thread:
    """:func:`warm_up_writers` in a daemon thread (a failure only costs the time it would save)."""

    def run() -> None:
        try:
            warm_up_writers()
        except Exception as exc:
            log.debug("writer warm-up stopped: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=run, name="writer-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up_in_background(atlas: Callable[[], Atlas]) -> threading.Thread:
    """:func:`warm_up` in a daemon thread. A failure is only logged at debug level: the stage that
    needs the atlas meets the same problem again and reports it properly."""

    def run() -> None:
        try:
            warm_up(atlas)
        except Exception as exc:  # reported by the stage that needs it
            log.debug("warm-up stopped: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread
