"""Load the ASPECTS atlas built by ``aspects-build-atlas`` (see docs/atlas.md).

The atlas folder holds ``template_ncct_1mm.nii.gz`` (symmetric brain-extracted NCCT template,
HU), ``aspects_atlas.nii.gz`` (labels of :mod:`aspects.labels` on the same grid),
``territories.nii.gz`` (arterial territories, level-1 labels of Liu et al. 2023, same grid),
``labels.json`` and ``levels.json`` (BG / SG slab z-ranges in physical LPS mm).

Grid: 1 mm, identity direction (LPS), mid-sagittal plane at physical x = 0 (see docs/atlas.md
for whether it runs through a voxel column or between two), so ``np.flip(arr_zyx, axis=2)`` is the contralateral mirror and the
patient's right hemisphere lies at x < 0.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from aspects.errors import EXIT_PROCESSING, InputError

TEMPLATE_FILE = "template_ncct_1mm.nii.gz"
LABELS_FILE = "aspects_atlas.nii.gz"
LABEL_TABLE_FILE = "labels.json"
LEVELS_FILE = "levels.json"
TERRITORIES_FILE = "territories.nii.gz"
ATLAS_FILES = (TEMPLATE_FILE, LABELS_FILE, TERRITORIES_FILE, LABEL_TABLE_FILE, LEVELS_FILE)

# Level-1 labels of the arterial territory atlas (Liu et al. 2023), right side; left = right - 1.
ARTERIAL_RIGHT: Dict[str, int] = {
    "ACA": 2, "MLS": 4, "LLS": 6, "MCAF": 8, "MCAP": 10, "MCAT": 12, "MCAO": 14, "MCAI": 16, "PCAT": 18,
    "PCAO": 20, "PCTP": 22, "ACTP": 24, "B": 26, "SC": 28, "IC": 30, "LV": 32,
}
# Level-1 labels of the arterial territory atlas (Liu et al. 2023; odd = left, even = right) by
# the major territory its own table gives them. Medial lenticulostriate (Heubner) counts as ACA and
# the anterior choroidal / thalamoperforator territory as posterior, as in that table.
TERRITORY_GROUPS: Dict[str, Tuple[int, ...]] = {
    "ACA": (1, 2, 3, 4),
    "MCA": tuple(range(5, 17)),  # lateral lenticulostriate + frontal/parietal/temporal/occipital/insular pars
    "PCA": tuple(range(17, 25)),  # PCA temporal/occipital, posterior + anterior choroidal/thalamoperforators
    "VB": tuple(range(25, 31)),  # basilar (brainstem), superior and inferior cerebellar
}
ENV_VAR = "ASPECTS_ATLAS_DIR"

# A slab: (z_min_mm, z_max_mm) in physical LPS z (superior is +z), inclusive.
Slab = Tuple[float, float]


@dataclass(frozen=True)
class Atlas:
    template: sitk.Image  # float32 HU, brain only (0 outside the brain)
    labels: sitk.Image  # uint8, values of aspects.labels (0 outside)
    territories: sitk.Image  # uint8, arterial territory level-1 labels (TERRITORY_GROUPS), 0 outside
    levels: Dict[str, Slab]  # {"BG": (z0, z1), "SG": (z0, z1)} physical mm
    path: Path


def default_atlas_dir() -> Path:
    """``$ASPECTS_ATLAS_DIR`` if set, else ``<repo>/atlas`` (next to the ``aspects`` package)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "atlas"


def read_levels(path: Path) -> Dict[str, Slab]:
    """The BG / SG slabs of a ``levels.json`` as ``{name: (z_min_mm, z_max_mm)}``."""
    data = json.loads(path.read_text())
    return {name: (float(data[name]["z_min_mm"]), float(data[name]["z_max_mm"])) for name in ("BG", "SG")}


def levels_span(levels: Mapping[str, Slab]) -> Slab:
    """The z range (mm) from the lowest slab's bottom to the highest slab's top: the axial levels
    at which ASPECTS is read (the lentiform's lower edge to the ventricle bodies' top)."""
    return (min(z0 for z0, _ in levels.values()), max(z1 for _, z1 in levels.values()))


def load_atlas(atlas_dir: Optional[Path] = None) -> Atlas:
    """Read the atlas folder; a missing or incomplete folder is an InputError (exit 7)."""
    folder = Path(atlas_dir) if atlas_dir is not None else default_atlas_dir()
    missing = [name for name in ATLAS_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(
            EXIT_PROCESSING,
            f"atlas not found at {folder} (missing {', '.join(missing)}); run make atlas",
        )
    try:
        template = sitk.ReadImage(str(folder / TEMPLATE_FILE), sitk.sitkFloat32)
        labels = sitk.ReadImage(str(folder / LABELS_FILE), sitk.sitkUInt8)
        territories = sitk.ReadImage(str(folder / TERRITORIES_FILE), sitk.sitkUInt8)
        levels = read_levels(folder / LEVELS_FILE)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(EXIT_PROCESSING, f"atlas at {folder} is unreadable: {exc}") from exc
    if not template.GetSize() == labels.GetSize() == territories.GetSize():
        raise InputError(EXIT_PROCESSING, f"atlas at {folder}: template, label and territory grids differ")
    return Atlas(template=template, labels=labels, territories=territories, levels=levels, path=folder)


def mca_territory(territories: np.ndarray) -> np.ndarray:
    """Boolean mask of the MCA territory in an array of level-1 territory labels."""
    return np.isin(territories, TERRITORY_GROUPS["MCA"])


def outside_mca(territories: np.ndarray) -> np.ndarray:
    """Boolean mask of the ACA, PCA and vertebrobasilar territories (brain outside the MCA's)."""
    return np.isin(territories, TERRITORY_GROUPS["ACA"] + TERRITORY_GROUPS["PCA"] + TERRITORY_GROUPS["VB"])


def region_volumes_ml(labels: sitk.Image) -> Dict[int, float]:
    """Volume (ml) of each label 1..20 of an ASPECTS label image (0.0 when absent)."""
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel().astype(np.int64), minlength=21)
    return {v: float(counts[v]) * voxel_ml for v in range(1, 21)}


class LazyAtlas:
    """The atlas folder, read on first use and then shared (thread-safe)."""

    def __init__(self, atlas_dir: Optional[Union[str, Path]] = None):
        self.atlas_dir = Path(atlas_dir) if atlas_dir is not None else None
        self._atlas: Optional[Atlas] = None
        self._lock = threading.Lock()

    def __call__(self) -> Atlas:
        with self._lock:
            if self._atlas is None:
                self._atlas = load_atlas(self.atlas_dir)
            return self._atlas
