"""Skull over the brain: how much of the brain's convexity has no bone near it (a craniectomy).

After a decompressive craniectomy (or a large skull defect) the scalp lies on the brain over
60-120 cm2 and the skull strip, which separates the brain from the scalp by the bone between
them, takes scalp as brain; the left-right comparison then reads the other hemisphere's cortex as
darker than that scalp: normal heads with a simulated hemicraniectomy scored 4-9 on the intact
side (38-115 ml of "infarct") or were flagged for blood, three of five without a QC reason, and the
real GE series moved its infarct to the wrong side (docs/results_v2.md, "A head without its skull
flap"). Such a study is not one ASPECTS was made for; the QC calls it ``low_confidence`` with its
reason.

The measure runs on the template-aligned grid (z, y, x; x rises to the patient's left): each voxel
of the template brain's surface above the lower :data:`CONVEXITY_FROM` of its height (the skull
base and the foramen magnum, where no bone lies below the brainstem, are left out) that lies in the
scanned field is uncovered when the nearest bone (> :data:`BONE_HU` in the unstripped head) is
more than :data:`REACH_MM` away. Bone lies 2-10 mm outside a correctly registered brain's surface
(a 4-5 mm skull beyond the CSF), so burr holes and small defects (under ~3 cm across) stay covered
by their rims; the area is reported per side in cm2 (one 2 mm voxel face per surface voxel).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
from scipy import ndimage as ndi

from aspects.skullstrip import BONE_HU

# Calibrated on intact skulls (85 v2 phantoms of every anatomy source at 0.625-5 mm, 41 of them
# from the older-brain sets, and the two real heads: at most 7.5 cm2 a side, on the scct template's averaged, thin
# skull; 0 on every other head) against hemicraniectomies simulated on each source and on the real
# GE series (one side's bone over the upper half of the head turned to soft tissue: 62-121 cm2 on
# that side); docs/results_v2.md, "A head without its skull flap".
REACH_MM = 16.0
CONVEXITY_FROM = 0.3  # fraction of the template brain's height above its lowest voxel
DEFECT_CM2 = 30.0  # per side
_BLOCK = 2  # the distance map is computed on blocks of 2 x 2 x 2 voxels (4 mm on the 2 mm grid)


def convexity(brain: np.ndarray, start_fraction: float = CONVEXITY_FROM) -> np.ndarray:
    """Boolean (z, y, x): the surface voxels of ``brain`` above the lower ``start_fraction`` of its
    height (z rises to the head)."""
    surface = brain & ~ndi.binary_erosion(brain)
    z = np.nonzero(brain.any(axis=(1, 2)))[0]
    if z.size == 0:
        return surface
    cut = z[0] + start_fraction * (z[-1] - z[0])
    return surface & (np.arange(brain.shape[0])[:, None, None] >= cut)


def bone_distance_mm(head_hu: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Distance (mm) of every voxel of ``head_hu`` (z, y, x, HU, unstripped) to the nearest bone,
    at the resolution of :data:`_BLOCK`-voxel blocks (a block holds bone when any voxel does);
    a large value everywhere when the array holds no bone."""
    bone = head_hu > BONE_HU
    shape = tuple(-(-n // _BLOCK) * _BLOCK for n in bone.shape)
    padded = np.zeros(shape, bool)
    padded[tuple(slice(0, n) for n in bone.shape)] = bone
    blocks = np.asarray(padded.reshape(shape[0] // _BLOCK, _BLOCK, shape[1] // _BLOCK, _BLOCK, shape[2] // _BLOCK,
                                       _BLOCK).any(axis=(1, 3, 5)))
    if not blocks.any():
        return np.full(bone.shape, np.inf, np.float32)
    dist = ndi.distance_transform_edt(~blocks).astype(np.float32) * (_BLOCK * spacing_mm)
    for axis in range(3):
        dist = np.repeat(dist, _BLOCK, axis=axis)
    return dist[tuple(slice(0, n) for n in bone.shape)]


def uncovered_convexity(head_hu: np.ndarray, surface: np.ndarray, inside: np.ndarray,
                        spacing_mm: float) -> Dict[str, float]:
    """cm2 of ``surface`` (the template brain's convexity, :func:`convexity`) in the scanned field
    ``inside`` with no bone within :data:`REACH_MM` in ``head_hu`` (the unstripped head on the same
    aligned grid, z, y, x), as ``{"right": ..., "left": ...}`` (x below the grid's middle column is
    the patient's right)."""
    uncovered = surface & inside & (bone_distance_mm(head_hu, spacing_mm) > REACH_MM)
    half = head_hu.shape[2] // 2
    face_cm2 = spacing_mm * spacing_mm / 100.0
    return {"right": round(float(uncovered[:, :, :half].sum()) * face_cm2, 1),
            "left": round(float(uncovered[:, :, half:].sum()) * face_cm2, 1)}


def defect_reasons(uncovered_cm2: Dict[str, float]) -> List[str]:
    """The QC reason for a side whose uncovered convexity reaches :data:`DEFECT_CM2`."""
    return [f"skull defect: {uncovered_cm2[side]:.0f} cm2 of the {side} convexity without bone (craniectomy?)"
            for side in ("right", "left") if uncovered_cm2.get(side, 0.0) >= DEFECT_CM2]
