"""Findings that change what ASPECTS means: suspected haemorrhage, old (chronic) infarct.

Both run on the template-aligned, skull-stripped HU volume (z, y, x), whose mid-sagittal plane
is the grid's central column, so ``np.flip(arr, axis=2)`` is the contralateral mirror.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
from scipy import ndimage

# Acute blood is 50-90 HU; grey matter tops out near 45 HU. Calcification (> 100 HU after
# smoothing, e.g. pineal, choroid plexus) and bone at the brain edge are excluded.
BLOOD_HU = (52.0, 95.0)
# CSF-like tissue (0-15 HU) in parenchyma whose mirror is brain tissue (>= 22 HU): the sharply
# marginated, volume-losing lesion of an old infarct. Ventricles and sulci are symmetric, so the
# mirror test leaves them out.
OLD_INFARCT_HU = 16.0
OLD_MIRROR_HU = 22.0
MIN_BLOOD_ML = 0.3
MIN_OLD_ML = 1.0
EDGE_EROSION_MM = 6.0  # keep away from the skull/brain border where partial volume mimics both


@dataclass(frozen=True)
class Flag:
    name: str
    volume_ml: float


def _components_over(mask: np.ndarray, voxel_ml: float, min_ml: float) -> float:
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    return float(sizes[sizes >= min_ml].sum())


def _inner(brain: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    it = max(1, int(round(EDGE_EROSION_MM / float(min(spacing_mm)))))
    return ndimage.binary_erosion(brain > 0, iterations=it)


def haemorrhage_ml(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Volume (ml) of hyperdense, blood-like parenchyma in components >= MIN_BLOOD_ML."""
    smooth = ndimage.median_filter(hu, size=3)
    mask = (smooth >= BLOOD_HU[0]) & (smooth <= BLOOD_HU[1]) & _inner(brain, spacing_mm)
    return _components_over(mask, float(np.prod(spacing_mm)) / 1000.0, MIN_BLOOD_ML)


def old_infarct_ml(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Volume (ml) of CSF-like parenchyma whose mirror is tissue, in components >= MIN_OLD_ML."""
    smooth = ndimage.uniform_filter(hu, size=3)
    mirror = np.flip(smooth, axis=2)
    inner = _inner(brain, spacing_mm)
    mask = (smooth < OLD_INFARCT_HU) & (mirror >= OLD_MIRROR_HU) & inner & np.flip(inner, axis=2)
    return _components_over(mask, float(np.prod(spacing_mm)) / 1000.0, MIN_OLD_ML)


def image_flags(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float]) -> List[Flag]:
    """Flags with their volumes; empty when neither finding is present."""
    flags = []
    blood = haemorrhage_ml(hu, brain, spacing_mm)
    if blood > 0:
        flags.append(Flag("haemorrhage_suspected", blood))
    old = old_infarct_ml(hu, brain, spacing_mm)
    if old > 0:
        flags.append(Flag("old_infarct_suspected", old))
    return flags
