"""A small haematoma, measured on the series' own slices.

The haemorrhage finding (:func:`aspects.flags.find`) works on the 2 mm template-aligned grid: a
3-voxel median of >= 52 HU, a blob with a 6 mm thick core. A 1-3 ml haematoma of 55-60 HU (fresh
blood before clot retraction: 40-60 HU, Parizel et al. 2001) loses its blob there: the grid's
anti-aliasing and partial volume with its rim and the slices around it bring it to 42-55 HU, and
the flag, with the exclusions it brings (the haematoma's mirror looks hypodense), is lost. In the
plane of each slice the scanner resolves it (0.4-1 mm pixels).

:func:`source_blood` looks there, around what the aligned grid hints at (components of >= 0.2 ml
that are >= 42 HU, 8 HU above the mirror, deep in the brain, away from calcium, bone and the
midline):

1. blood density in the plane: the slice's in-plane mean over 2 mm within
   [:data:`SOURCE_BLOOD_HU`, :data:`aspects.flags.BLOOD_HU` max) (a 3 x 3 median left the
   55-60 HU haematomas of 1 mm slices, noise 9 HU, in pieces);
2. not the slope of bone or calcium: no part of a bright component that holds tissue of
   :data:`aspects.flags.DENSE_HU`, nor within :data:`aspects.flags.DENSE_MARGIN_MM` of it;
3. a blob, not a sheet or a vessel: what survives an in-plane opening with a square
   :data:`SOURCE_BLOOD_WIDTH_MM` wide;
4. on the aligned grid: within the candidate's reach (4 mm), brighter than the mirror by
   :data:`aspects.flags.BLOOD_MIRROR_EXCESS_HU` (3-voxel medians), in components of at least
   :data:`aspects.flags.MIN_BLOOD_ML`.

The finding joins the aligned one (:func:`aspects.flags.find`): the flag, and what blood explains.

**At the ASPECTS levels the search reaches the brain's rim.** A lobar haematoma lies against the
inner table: most of it within the 6 mm the aligned search leaves out at the brain's edge, and
its bright component runs into the bone, so step 2 dropped it whole (three of 27 haemorrhage
controls missed, each read as two hypodense regions on the other side). Between the lowest and
the highest ASPECTS slab (:func:`aspects.atlas.levels_span`) the candidates come from the whole
brain but its outer voxel, the bone's margin is :data:`RIM_DENSE_MARGIN_MM` in the plane, and a
bright component that runs into bone keeps what is left of it beyond that margin if it survives an
opening :data:`RIM_BLOB_WIDTH_MM` wide: the partial volume of the inner table is a band of a few mm,
the haematoma a blob of 1-3 cm. Below those levels the skull base's bone runs obliquely through
the slices (orbital roofs, sphenoid wings, the middle fossa's floor) and its partial volume makes
bright blobs of a haematoma's size and density (1-3 ml on the averaged scct template, none above
-17 mm of the template's z): there the search stays as above.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.flags import (BLOOD_HU, BLOOD_MIRROR_EXCESS_HU, DENSE_HU, DENSE_MARGIN_MM, MIN_BLOOD_ML, BloodGround,
                           components_over, voxel_volume_ml)
from aspects.preprocess import Preprocessed
from aspects.source_cavity import block_on_aligned, compact_in_plane, source_block

# Opening width (mm, a square of the odd pixel count nearest to it): a 0.3 ml haematoma is ~8 mm
# across; the bone partial volume left after the brain's 6 mm erosion and the hyperdense MCA
# (3-4 mm) are thinner.
SOURCE_BLOOD_WIDTH_MM = 3.0
# The in-plane mean's width: a 55 HU haematoma on 1 mm slices with 9 HU noise stays in one piece
# (a 3 x 3 median left it in pieces the opening removed).
SOURCE_MEAN_MM = 2.0
# 2 HU below the aligned flag's floor (aspects.flags.BLOOD_HU): the mean takes in the haematoma's
# soft edge; fresh blood is 40-60 HU, grey matter <= 45.
SOURCE_BLOOD_HU = 50.0
# Where to look: aligned voxels whose 3-voxel mean is this dense and this much above the mirror's
# (a 1-3 ml haematoma of 55-60 HU reads 42-55 HU on the aligned grid; grey matter 30-42 HU).
CANDIDATE_HU = 42.0
CANDIDATE_EXCESS_HU = 8.0
# ... in components of at least this size (a 0.3 ml haematoma gives 0.75 ml or more; noise and
# grey matter give many of 0.05-0.2 ml)
CANDIDATE_MIN_ML = 0.2
# the block of slices around a candidate: 12 mm, to hold the bone a partial-volume slope runs into
_LOOK_VOXELS = 6
# a pineal calcification of 5 mm slices (below the dense threshold) lay 5 mm off the midline
MIDLINE_MM = 6.0
# At the ASPECTS levels (module docstring): the bone's margin in the plane (the box's depth through
# the slices stays DENSE_MARGIN_MM) and the opening a bright component that runs into bone must
# survive beyond it (the inner table's partial-volume band is 1-3 mm; a 2 ml haematoma is 15 mm across).
RIM_DENSE_MARGIN_MM = 3.0
RIM_BLOB_WIDTH_MM = 6.0


def mean_in_plane(hu_zyx: np.ndarray, pixel_mm: float, width_mm: float) -> np.ndarray:
    """Each slice's in-plane mean over a square ``width_mm`` wide (the odd pixel count nearest to it)."""
    side = 2 * max(1, int(round(width_mm / 2.0 / pixel_mm))) + 1
    return ndi.uniform_filter(hu_zyx.astype(np.float32), size=(1, side, side), mode="nearest")


def near_box(mask_zyx: np.ndarray, spacing_zyx: Sequence[float], mm: float,
             plane_mm: Optional[float] = None) -> np.ndarray:
    """Voxels within ``mm`` of a voxel of ``mask_zyx`` along every axis (a box, separable);
    ``plane_mm``: another reach within the slice plane (y, x)."""
    reach = (mm, mm, mm) if plane_mm is None else (mm, plane_mm, plane_mm)
    size = tuple(2 * int(round(r / float(s))) + 1 for r, s in zip(reach, spacing_zyx))
    return ndi.maximum_filter(mask_zyx.astype(np.uint8), size=size, mode="constant", cval=0) > 0


def hyperdense_in_plane(hu_zyx: np.ndarray, spacing_zyx: Sequence[float], rim: bool = False) -> np.ndarray:
    """Blood-like blobs of a block of slices: the in-plane mean (:data:`SOURCE_MEAN_MM`) within
    [:data:`SOURCE_BLOOD_HU`, :data:`aspects.flags.BLOOD_HU` max), not part of a hyperdense
    slope into bone or calcium (>= :data:`aspects.flags.DENSE_HU`), nor within
    :data:`aspects.flags.DENSE_MARGIN_MM` of such tissue in the slice or the slices beside it,
    and what survives an in-plane opening :data:`SOURCE_BLOOD_WIDTH_MM` wide.

    ``rim`` (the ASPECTS levels, module docstring): the margin is :data:`RIM_DENSE_MARGIN_MM` in
    the plane, and what a slope holds beyond it counts if it survives an opening
    :data:`RIM_BLOB_WIDTH_MM` wide."""
    pixel_mm = float(min(spacing_zyx[1:]))
    mean = mean_in_plane(hu_zyx, pixel_mm, SOURCE_MEAN_MM)
    dense = hu_zyx >= DENSE_HU
    # the partial volume of the skull base (cut obliquely, or a template's blurred inner table)
    # is a band of 50-100 HU that runs into the bone, in its slice or through the next ones: a
    # bright component holding dense voxels is that band (in-plane only, it kept 8 false
    # findings at the temporal pole of the scct head on 195 studies without blood)
    labels, n = ndi.label(mean >= SOURCE_BLOOD_HU)
    slope = np.zeros(n + 1, bool)
    slope[np.unique(labels[dense])] = True
    slope[0] = True
    on_slope = slope[labels]
    clear = (mean >= SOURCE_BLOOD_HU) & (mean < BLOOD_HU[1])
    clear &= ~near_box(dense, spacing_zyx, DENSE_MARGIN_MM, RIM_DENSE_MARGIN_MM if rim else None)
    found = compact_in_plane(clear & ~on_slope, pixel_mm, SOURCE_BLOOD_WIDTH_MM)
    if rim:
        found |= compact_in_plane(clear & on_slope, pixel_mm, RIM_BLOB_WIDTH_MM)
    return found


def _seen_on_slices(pre: Preprocessed, candidate: np.ndarray, rim: bool) -> np.ndarray:
    """Aligned voxels within reach (2 voxels) of the components of ``candidate`` (>=
    :data:`CANDIDATE_MIN_ML`) that :func:`hyperdense_in_plane` finds on the series' slices."""
    out = np.zeros(candidate.shape, bool)
    labels, n = ndi.label(candidate, structure=np.ones((3, 3, 3), bool))
    size_ml = np.bincount(labels.ravel(), minlength=n + 1) * voxel_volume_ml(pre.aligned.GetSpacing())
    size_ml[0] = 0.0
    spacing_zyx = pre.source.GetSpacing()[::-1]
    # each candidate on its own block of slices (scattered candidates would make one block of
    # the whole head); the block reaches far enough to hold the bone a slope runs into
    for i in np.flatnonzero(size_ml >= CANDIDATE_MIN_ML):
        comp = labels == i
        reach = ndi.binary_dilation(comp, iterations=2)
        found = source_block(pre, ndi.binary_dilation(comp, iterations=_LOOK_VOXELS))
        if found is None:
            continue
        block, src = found
        hyper = hyperdense_in_plane(src, spacing_zyx, rim)
        if hyper.any():
            out |= block_on_aligned(hyper, pre, block, reach) & reach
    return out


def source_blood(pre: Preprocessed, ground: BloodGround, levels_mm: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Blood seen on the source slices (see the module docstring), as a boolean mask on the
    aligned grid; empty when the aligned grid shows no candidate or the series is not at hand.
    ``ground``: the aligned study's :func:`aspects.flags.blood_ground`, shared with the aligned
    blood finding; ``levels_mm``: the ASPECTS levels' z range on the aligned grid
    (:func:`aspects.atlas.levels_span`), where the search reaches the brain's rim (None: nowhere)."""
    aligned = sitk.GetArrayViewFromImage(pre.aligned)
    if pre.source is None:
        return np.zeros(aligned.shape, bool)
    spacing = pre.aligned.GetSpacing()
    excess = ground.smooth - np.flip(ground.smooth, axis=2)
    # the midline (falx, sinuses, pineal and habenular calcification): its mirror is itself
    x_mm = (np.arange(aligned.shape[2]) + 0.5 - aligned.shape[2] / 2.0) * spacing[0]
    off_midline = np.broadcast_to(np.abs(x_mm) > MIDLINE_MM, aligned.shape)
    hint = off_midline & (ndi.uniform_filter(aligned.astype(np.float32), size=3) >= CANDIDATE_HU) \
        & (excess >= CANDIDATE_EXCESS_HU)
    inner = ground.searchable & off_midline
    if levels_mm is None:
        rim = np.zeros(aligned.shape, bool)
    else:
        z_mm = np.array([pre.aligned.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(aligned.shape[0])])
        at_levels = np.broadcast_to(((z_mm >= levels_mm[0]) & (z_mm <= levels_mm[1]))[:, None, None], aligned.shape)
        inner = inner & ~at_levels
        rim = ndi.binary_erosion(sitk.GetArrayViewFromImage(pre.brain_mask) > 0) & off_midline & at_levels
    seen = _seen_on_slices(pre, hint & inner, rim=False) & inner
    if rim.any():
        seen |= _seen_on_slices(pre, hint & rim, rim=True) & rim
    return components_over(seen & (excess >= BLOOD_MIRROR_EXCESS_HU), voxel_volume_ml(spacing), MIN_BLOOD_ML,
                           np.ones((3, 3, 3), bool))
