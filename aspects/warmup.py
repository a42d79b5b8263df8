"""Work every run needs that does not depend on the study, done before or beside the study's reading.

:func:`warm_up` imports ANTs (antspyx imports scikit-learn, pandas and matplotlib with it: about
1.5 s of CPU on the 2-core machine), reads the atlas (:class:`aspects.atlas.LazyAtlas`: read
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
    import ants  # noqa: F401  (the registrations' library; its import is the cost)

    from aspects.preprocess import aligned_template

    aligned_template(atlas())


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
