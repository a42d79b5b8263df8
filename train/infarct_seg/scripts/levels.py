"""BG / SG slabs (atlas ``levels.json``, physical mm) as z-index ranges of the aligned training grid.

TAGL (aspects_research.losses) compares the two ASPECTS levels; the atlas defines them in physical LPS z,
the aligned grid has identity direction, so index = (z_mm - origin_z) / spacing_z.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Optional, Tuple

import SimpleITK as sitk

from aspects.atlas import LEVELS_FILE, default_atlas_dir, read_levels

log = logging.getLogger(__name__)
IndexSlab = Tuple[int, int]


def slab_indices(z_min_mm: float, z_max_mm: float, origin_z: float, spacing_z: float, size_z: int) -> IndexSlab:
    """Half-open ``(start, stop)`` range of the planes whose centres lie in ``[z_min_mm, z_max_mm]``
    (so adjacent slabs never share a plane), clipped to the grid."""
    start = max(0, math.ceil((z_min_mm - origin_z) / spacing_z - 1e-6))
    stop = min(size_z, math.floor((z_max_mm - origin_z) / spacing_z + 1e-6) + 1)
    if stop <= start:
        raise ValueError(f"slab [{z_min_mm}, {z_max_mm}] mm lies outside the aligned grid")
    return start, stop


def aligned_slabs(datalist: str, data_root: str, atlas_dir: Optional[str] = None):
    """``(bg_slab, sg_slab)`` on the grid of the datalist's first training image; ``(None, None)``
    (TAGL off, logged) when the atlas levels are unavailable."""
    levels_file = Path(atlas_dir or default_atlas_dir()) / LEVELS_FILE
    if not levels_file.is_file():
        log.warning("TAGL disabled: no atlas levels at %s", levels_file)
        return None, None
    first = json.loads(Path(datalist).read_text())["training"][0]["image"]
    reader = sitk.ImageFileReader()
    reader.SetFileName(os.path.join(data_root, first))
    reader.ReadImageInformation()
    direction = reader.GetDirection()
    if abs(direction[8] - 1.0) > 1e-3:
        raise ValueError(f"{first}: not an aligned image (z axis is not superior)")
    levels = read_levels(levels_file)
    oz, sz, nz = reader.GetOrigin()[2], reader.GetSpacing()[2], reader.GetSize()[2]
    slabs = tuple(slab_indices(*levels[name], oz, sz, nz) for name in ("BG", "SG"))
    log.info("TAGL slabs (z planes): BG %s, SG %s", *slabs)
    return slabs
