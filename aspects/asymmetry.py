"""Bilateral-asymmetry baseline for acute ischaemic hypodensity on the aligned grid.

Acute infarcts are a few HU darker than the same tissue in the other hemisphere. On the
template-aligned grid ``np.flip(arr, axis=2)`` is the contralateral counterpart of every voxel;
a coarse, strongly regularised SyN of that mirror onto the image (:func:`contralateral`)
removes the few mm by which real hemispheres differ, and

    difference = smooth(counterpart) - smooth(image)

is positive where a voxel is darker than its contralateral counterpart. A voxel is a candidate when the difference
reaches :data:`SEED_HU` (or :data:`GROW_HU` when connected to such a voxel: hysteresis keeps the
faint rim of a lesion without admitting isolated noise) inside brain parenchyma on both sides.
Cleaning: a one-voxel opening, components below :data:`MIN_COMPONENT_ML` removed, and on the
hemisphere with less candidate volume only components of at least :data:`OTHER_SIDE_MIN_ML`
kept (acute infarcts are almost always unilateral; the other side's candidates are mostly noise
and anatomical asymmetry).

Every parameter is a named constant below with its reason; the figures were chosen on the
synthetic phantoms (hu_drop 2-12 HU, noise 3-6 HU at 5 mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.model_io import mirror
from aspects.registration import SYN_THREADS, syn_warp

# Gaussian smoothing (aligned voxels, 2 mm): CT noise of 3-6 HU per voxel drops below ~1 HU while
# a 1 ml lesion (~5 voxels across) keeps most of its contrast.
SMOOTH_SIGMA_VOX = 1.25
# Hysteresis thresholds on the counterpart-minus-image difference (HU). 4 HU is ~3 noise SDs of
# the smoothed difference and about half the drop of a visible acute infarct (6-10 HU); growing
# down to 2.5 HU recovers the lesion's rim. On 8 phantoms (hu_drop 4-10, 3 normal) a sweep of
# seed 3.5-4.5 / grow 2-3 / minimum 0.4-1 ml gave: 0 ml on the normal heads, mean Dice 0.63 and
# found/true volume 0.5-1.3 (one small M6 lesion 2.2) with these values; grow 2.0 left 1-4 ml
# on normal heads, grow 3.0 halved the 4 HU lesion.
SEED_HU = 4.0
GROW_HU = 2.5
# Larger differences are not acute ischaemia but CSF (ventricle asymmetry) or blood on the other
# side; such voxels are excluded rather than clipped.
MAX_DIFF_HU = 20.0
# CSF and old infarct are < ~12 HU; acute infarct of white matter (~28 HU) minus 12 HU stays
# above. CSF is removed with a one-voxel margin (partial volume at ventricle walls).
CSF_HU = 12.0
CSF_MARGIN_VOX = 1
# Above 60 HU is blood or calcification on either side: not comparable tissue.
DENSE_HU = 60.0
# The outermost voxels of the brain mask (stripping edge, partial volume with bone) and the
# midline (a voxel is its own mirror there) carry no asymmetry information.
EDGE_VOX = 2
MIDLINE_HALF_WIDTH_VOX = 2
MIN_COMPONENT_ML = 1.0
# Mirror-to-image SyN: coarse levels, strong regularisation (see :func:`contralateral`).
CONTRA_SYN_ITERATIONS = (30, 10)
CONTRA_SYN_PARAMS = "SyN[0.2,4,1]"
# Local cross-correlation (radius 1) matches the grey/white pattern without caring about a
# lesion's few HU; mean squares or MI leave 3-4 times more false volume on normal phantoms.
CONTRA_METRIC = "CC[{f},{m},1,1]"
OTHER_SIDE_MIN_ML = 4.0
# The mirror registration runs on the brain's bounding box with this margin (aligned voxels,
# 16 mm): the images smoothed for the 8 mm level (sigma 2 voxels) reach ~6 voxels beyond the
# brain, and the field is pinned to zero at the box edge, well outside the brain. On the whole
# grid it cost 1.3 x as much CPU for a difference map within 0.03 HU (mean) of this one (one
# study, 2026-12-02); the app's answers are identical (same-answers check, docs/performance.md).
CONTRA_BOX_MARGIN_VOX = 8


def _smooth_inside(hu: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing normalised by the smoothed mask, so 0 HU outside the brain does not
    darken the cortex (normalised convolution)."""
    m = mask.astype(np.float32)
    num = ndi.gaussian_filter(hu.astype(np.float32) * m, sigma)
    den = ndi.gaussian_filter(m, sigma)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)


def contralateral(hu_zyx: np.ndarray, brain_zyx: np.ndarray, grid: Optional[sitk.Image] = None,
                  threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The mirrored image and brain mask, deformed onto the image (SyN, coarse levels only);
    ``threads``: the registration's (None: SYN_THREADS; the same field on any count).

    Affine alignment to the symmetric template leaves the two hemispheres of a real brain a few
    mm apart (natural asymmetry, deformation); comparing grey matter with white matter across
    that offset looks like a 5-10 HU "lesion". A smooth, coarse-only (8 and 4 mm) deformable
    registration of the mirror onto the image removes that offset while leaving lesion-sized
    (< ~1 cm) contrast differences in place.
    """
    grid = grid if grid is not None else sitk.Image([int(v) for v in hu_zyx.shape[::-1]], sitk.sitkFloat32)
    mir_hu, mir_brain = mirror(hu_zyx).astype(np.float32), mirror(brain_zyx.astype(np.uint8))
    box = _syn_box(brain_zyx)

    def on_box(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr[box]))
        img.SetSpacing(grid.GetSpacing())
        img.SetDirection(grid.GetDirection())
        img.SetOrigin(grid.TransformIndexToPhysicalPoint([int(s.start) for s in box[::-1]]))
        return img

    hu_w, brain_w = syn_warp(on_box(np.clip(hu_zyx, 0, 80).astype(np.float32)), on_box(np.clip(mir_hu, 0, 80)),
                             [on_box(mir_hu), on_box(mir_brain)], [False, True], iterations=CONTRA_SYN_ITERATIONS,
                             shrink=(4, 2), smooth_vox=(2, 1), metric=CONTRA_METRIC, params=CONTRA_SYN_PARAMS,
                             threads=SYN_THREADS if threads is None else threads)
    hu_out = np.zeros(hu_zyx.shape, np.float32)
    brain_out = np.zeros(hu_zyx.shape, bool)
    hu_out[box] = sitk.GetArrayFromImage(hu_w)
    brain_out[box] = sitk.GetArrayFromImage(brain_w) > 0
    return hu_out, brain_out


def _syn_box(brain_zyx: np.ndarray) -> Tuple[slice, ...]:
    """The part of the aligned grid the mirror registration runs on: the bounding box of the
    brain and its mirror, :data:`CONTRA_BOX_MARGIN_VOX` wider on every side, its start a multiple
    of the coarsest shrink factor (4) so that the coarse grids sample the same points as on the
    whole grid. The whole grid is about twice that box; outside it both images are 0 and the
    metric has no gradient."""
    both = brain_zyx.astype(bool)
    both = both | mirror(both)
    if not both.any():
        return tuple(slice(0, n) for n in brain_zyx.shape)
    nz = np.argwhere(both)
    lo = np.maximum((nz.min(axis=0) - CONTRA_BOX_MARGIN_VOX) // 4 * 4, 0)
    hi = np.minimum(nz.max(axis=0) + CONTRA_BOX_MARGIN_VOX + 1, brain_zyx.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def difference_map(hu_zyx: np.ndarray, brain_zyx: np.ndarray, sigma: float = SMOOTH_SIGMA_VOX,
                   contra: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """smooth(counterpart) - smooth(image) (HU), 0 outside the brain; the counterpart is the
    plain mirror unless ``contra`` (from :func:`contralateral`) is given."""
    brain = brain_zyx.astype(bool)
    img = _smooth_inside(hu_zyx, brain, sigma)
    if contra is None:
        mir, mir_brain = mirror(img), mirror(brain)
    else:
        mir_brain = contra[1].astype(bool)
        mir = _smooth_inside(contra[0], mir_brain, sigma)
    both = brain & mir_brain
    return np.where(both, mir - img, 0.0).astype(np.float32)


def comparable_parenchyma(hu_zyx: np.ndarray, brain_zyx: np.ndarray) -> np.ndarray:
    """Voxels where a hemispheric comparison means something (see the module constants)."""
    brain = brain_zyx.astype(bool)
    both = brain & mirror(brain)
    inner = ndi.binary_erosion(both, iterations=EDGE_VOX)
    light = _smooth_inside(hu_zyx, brain, 0.7)
    csf = ndi.binary_dilation(light < CSF_HU, iterations=CSF_MARGIN_VOX)
    dense = ndi.binary_dilation(light > DENSE_HU, iterations=1)
    csf, dense = csf | mirror(csf), dense | mirror(dense)
    out = inner & ~csf & ~dense
    mid = out.shape[2] / 2.0
    x = np.arange(out.shape[2]) + 0.5
    out[:, :, np.abs(x - mid) <= MIDLINE_HALF_WIDTH_VOX] = False
    return out


def _components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    lab, n = ndi.label(mask)
    return lab, np.bincount(lab.ravel(), minlength=n + 1)


@dataclass(frozen=True)
class AsymmetryMaps:
    """What the comparison with the contralateral hemisphere sees, on the aligned grid (z, y, x):
    ``difference`` = smooth(counterpart) - smooth(image) in HU (positive = darker than the mirror)
    and ``comparable`` = the parenchyma where that difference means something. Shared by the voxel
    baseline and the region-level evidence (:mod:`aspects.region_evidence`)."""

    difference: np.ndarray
    comparable: np.ndarray
    # the contralateral counterpart deformed onto the image (HU), when it was deformed
    counterpart: Optional[np.ndarray] = None


def asymmetry_maps(hu_zyx: np.ndarray, brain_zyx: np.ndarray, grid: Optional[sitk.Image] = None,
                   deform: bool = True) -> AsymmetryMaps:
    """Difference map (counterpart deformed onto the image unless ``deform`` is False) and the
    comparable parenchyma (differences above :data:`MAX_DIFF_HU` are CSF or blood, not ischaemia)."""
    contra = contralateral(hu_zyx, brain_zyx, grid) if deform else None
    diff = difference_map(hu_zyx, brain_zyx, contra=contra)
    return AsymmetryMaps(diff, comparable_parenchyma(hu_zyx, brain_zyx) & (diff <= MAX_DIFF_HU),
                         contra[0] if contra is not None else None)


def asymmetry_infarct(hu_zyx: np.ndarray, brain_zyx: np.ndarray, spacing_mm: float = 2.0,
                      grid: Optional[sitk.Image] = None, deform: bool = True,
                      maps: Optional[AsymmetryMaps] = None) -> Tuple[np.ndarray, Dict[str, object]]:
    """Boolean hypodensity mask on the aligned grid and a summary dict.

    ``hu_zyx``: aligned HU (0 outside the brain); ``brain_zyx``: aligned brain mask;
    ``spacing_mm``: the isotropic aligned spacing (for the size limits in ml); ``maps``: from
    :func:`asymmetry_maps` when already computed.
    """
    voxel_ml = spacing_mm**3 / 1000.0
    maps = maps if maps is not None else asymmetry_maps(hu_zyx, brain_zyx, grid, deform)
    diff, ok = maps.difference, maps.comparable
    grow = ok & (diff >= GROW_HU)
    seeds = ok & (diff >= SEED_HU)
    lab, _ = _components(grow)
    keep = np.unique(lab[seeds])
    cand = np.isin(lab, keep[keep > 0])
    cand = ndi.binary_opening(cand)
    lab, sizes = _components(cand)
    big = np.flatnonzero(sizes * voxel_ml >= MIN_COMPONENT_ML)
    big = big[big > 0]
    cand = np.isin(lab, big)
    # Side of each voxel: LPS x grows to the patient's left, so low x indices are the right side.
    nx = cand.shape[2]
    right = np.zeros_like(cand)
    right[:, :, : nx // 2] = True
    vol_r, vol_l = float(cand[right].sum()) * voxel_ml, float(cand[~right].sum()) * voxel_ml
    side = None
    if vol_r or vol_l:
        side = "right" if vol_r >= vol_l else "left"
        minor = ~right if side == "right" else right
        lab, sizes = _components(cand & minor)
        small = np.flatnonzero(sizes * voxel_ml < OTHER_SIDE_MIN_ML)
        cand &= ~np.isin(lab, small[small > 0]) | ~minor
    vol = float(cand.sum()) * voxel_ml
    info = {
        "method": "asymmetry",
        "seed_hu": SEED_HU,
        "grow_hu": GROW_HU,
        "smooth_sigma_mm": SMOOTH_SIGMA_VOX * spacing_mm,
        "volume_ml": round(vol, 2),
        "side": side if vol > 0 else None,
        "mean_difference_hu": round(float(diff[cand].mean()), 2) if vol > 0 else 0.0,
    }
    return cand, info
