"""Work every run needs that does not depend on the study, done before the study is read.

:func:`warm_up` imports ANTs (antspyx imports scikit-learn, pandas and matplotlib with it: about
1.5 s of CPU on the 2-core machine), reads the atlas once for the process
(:func:`aspects.atlas.shared_atlas`) and puts its template on the aligned grid
(:func:`aspects.preprocess.aligned_template`). The app starts it in a background thread once the
input has passed its checks, so that it overlaps the reading of the DICOM files; a long-lived
process calls it once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


def warm_up(atlas_dir: Optional[Path] = None) -> None:
    """Import ANTs, load the shared atlas and its aligned-grid template (errors propagate)."""
    import ants  # noqa: F401  (the registrations' library; its import is the cost)

    from aspects.atlas import shared_atlas
    from aspects.preprocess import aligned_template

    aligned_template(shared_atlas(atlas_dir))


def warm_up_in_background(atlas_dir: Optional[Path] = None) -> threading.Thread:
    """:func:`warm_up` in a thread. A failure is only logged at debug level: the stage that
    needs the atlas meets the same problem again and reports it properly."""

    def run() -> None:
        try:
            warm_up(atlas_dir)
        except Exception as exc:  # reported by the stage that needs it
            log.debug("warm-up stopped: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread
