"""Synthetic studies for tests, made once per session and reused (the ``phantom_case`` fixture of
tests/conftest.py calls :func:`make_case` with the session's folder):

    def test_something(phantom_case):
        case = phantom_case(7, kind="acute", thickness=5.0, hu_drop=10, pattern="whole_mca")
        # case/dicom/*.dcm, case/truth/{infarct,regions}.nii.gz, case/truth.json

``make_case`` takes the options of :class:`aspects_research.phantoms.PhantomOptions` as keywords
(hu_drop, pattern, side, tilt_deg, noise_hu, deform, pose, pixel_mm, matrix). Its default matrix
is 256 x 256 (about 1 s a case after the atlas is loaded); pass ``matrix=512`` for scanner-size
slices. The same arguments under the same root return the same folder without regenerating.
Needs the atlas (``make atlas`` or ``$ASPECTS_ATLAS_DIR``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Tuple

from aspects_research.phantom_dicom import write_case
from aspects_research.phantoms import PhantomOptions, case_id_for, default_anatomy, make_phantom

FIXTURE_MATRIX = 256
_made: Dict[Tuple[str, str], Path] = {}


def case_key(seed: int, kind: str, thickness: float, opts: Dict[str, Any]) -> str:
    """Folder name for one set of arguments (readable prefix + hash of all options)."""
    blob = json.dumps({"seed": seed, "kind": kind, "thickness": thickness, **opts}, sort_keys=True)
    return f"{case_id_for(seed)}-{kind}-{thickness:g}mm-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def make_case(root: Path, seed: int, kind: str = "acute", thickness: float = 5.0, **opts: Any) -> Path:
    """Path of a generated case folder under ``root`` (made on first use, then reused)."""
    opts.setdefault("matrix", FIXTURE_MATRIX)
    name = case_key(seed, kind, thickness, opts)
    key = (str(root), name)
    if key in _made:
        return _made[key]
    folder = Path(root) / name
    if not (folder / "truth.json").is_file():  # truth.json is written last: present = complete
        ph = make_phantom(seed, PhantomOptions(kind=kind, thickness=thickness, **opts), default_anatomy())
        tmp = Path(root) / (name + ".partial")
        write_case(ph, tmp, case_id_for(seed))
        (tmp / case_id_for(seed)).rename(folder)
        tmp.rmdir()
    _made[key] = folder
    return folder
