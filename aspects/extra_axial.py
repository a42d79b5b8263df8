"""Blood between the brain and the skull: an acute subdural (or epidural) haematoma.

An acute subdural haematoma is a crescent of 50-80 HU between the inner table and the brain, a
few mm to 2 cm thick, spread along the convexity. The parenchymal blood finding
(:func:`aspects.flags.find`) does not see it by design: it searches the brain more than 6 mm from
its edge and away from bone, to keep off the skull's partial volume. Unseen, it does worse than go
unflagged: the mirror comparison reads the other hemisphere's cortex as darker than the blood and
calls it infarct (0.8.0 on 16 simulated 6-10 mm haematomas: ASPECTS 3-9 on the other side, 12 of
them with no flag; docs/results_v2.md, "Blood between the brain and the skull").

:func:`extra_axial_blood` looks for it on the template-aligned grid (z, y, x; x rises to the
patient's left) in the unstripped head:

1. blood density: the 3-voxel median within :data:`aspects.flags.BLOOD_HU`, at least
   :data:`aspects.flags.BLOOD_MIRROR_EXCESS_HU` above its mirror (a haematoma is one-sided; the
   bone's partial volume, the sinuses and the dura are symmetric);
2. inside the skull (each axial slice's bone ring filled), beyond the inner table's partial
   volume on the 2 mm grid: more than :data:`FROM_BONE_MM` from bone (> :data:`aspects.skullstrip.BONE_HU`), where
   the nearest bone lies within 30 degrees of the axial plane (:data:`STEEP`): where the skull runs
   obliquely through the slices (the vertex, the skull base) the partial volume of thick slices
   spreads 5-8 mm into the brain (6.9 ml of 52-95 HU "crescent" at the vertex of the real-GE-
   anatomy phantoms);
3. over the cerebral convexity (within :data:`CONVEXITY_REACH_MM` of the template brain's surface
   above its lower 30 %, :func:`aspects.skull_cover.convexity`, and more than
   :data:`CEREBELLUM_MARGIN_MM` from the cerebellar territory: the tentorium, the transverse sinuses
   and the petrous bone lie below it: up to 4 ml on the GE-anatomy phantoms) and more than :data:`MIDLINE_MM` from the midline (the falx,
   the superior sagittal sinus);
4. against the bone: a component (26-connected) that comes within :data:`TOUCH_MM` of it, of at
   least :data:`MIN_EXTRA_AXIAL_ML`: on 171 phantoms without such blood (every anatomy source,
   0.625-5 mm, five sets) and both real heads the largest component passing 1-3 is 0.8 ml; on
   simulated haematomas (``aspects_research.tools.robustness.add_subdural``) 4.9-36 ml at 10 mm
   (9 of 9 found), 0.7-23 ml at 6 mm (6 of 9), 0-4.3 ml at 4 mm (3 of 9).

Not looked for: a chronic (hypodense) collection; blood at the vertex or the skull base, or within
12 mm of the midline; a collection as thick on both sides (the mirror test). A lobar haematoma that
lies against the bone is found here in part as well (blood either way).

The finding joins the blood finding (the ``haemorrhage_suspected`` flag, its SEG segment and what
blood explains: the tissue beside it and beside its mirror is not scored). It is computed once in
preprocessing, where the unstripped head is on the aligned grid.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from aspects.flags import BLOOD_HU, BLOOD_MIRROR_EXCESS_HU, components_over, voxel_volume_ml
from aspects.skullstrip import BONE_HU, fill_in_plane

FROM_BONE_MM = 3.0
TOUCH_MM = FROM_BONE_MM + 1.0
STEEP = 0.5  # |d distance / dz| / |gradient|: the nearest bone within 30 degrees of the axial plane
MIDLINE_MM = 12.0
CONVEXITY_REACH_MM = 25.0
CEREBELLUM_MARGIN_MM = 15.0
MIN_EXTRA_AXIAL_ML = 1.5


def search_region(convexity: np.ndarray, cerebellum: Optional[np.ndarray], spacing_mm: Sequence[float]) -> np.ndarray:
    """Boolean (z, y, x): the voxels within :data:`CONVEXITY_REACH_MM` of the ``convexity``
    (:func:`aspects.skull_cover.convexity` of the template brain) not within
    :data:`CEREBELLUM_MARGIN_MM` of ``cerebellum`` (the vertebrobasilar territory; None: none),
    more than :data:`MIDLINE_MM` from the grid's mid-sagittal plane."""
    sampling = tuple(float(s) for s in spacing_mm)[::-1]
    surface = convexity.astype(bool)
    if cerebellum is not None and cerebellum.any():
        surface = surface & (ndi.distance_transform_edt(~cerebellum.astype(bool), sampling=sampling) > CEREBELLUM_MARGIN_MM)
    if not surface.any():
        return surface
    region = ndi.distance_transform_edt(~surface, sampling=sampling) <= CONVEXITY_REACH_MM
    nx = region.shape[2]
    x_mm = (np.arange(nx) + 0.5 - nx / 2.0) * float(spacing_mm[0])
    return region & (np.abs(x_mm) > MIDLINE_MM)[None, None, :]


def median3_at(hu: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The 3 x 3 x 3 median of ``hu`` at the voxels of ``where`` (in ``np.nonzero`` order): what
    ``scipy.ndimage.median_filter(hu, size=3)`` gives there (its mirrored border), for a fraction of
    the work when ``where`` is sparse."""
    padded = np.pad(hu, 1, mode="symmetric")
    z, y, x = np.nonzero(where)
    values = np.stack([padded[z + i, y + j, x + k] for i in range(3) for j in range(3) for k in range(3)], axis=1)
    return np.partition(values, 13, axis=1)[:, 13]


def _blood_like(hu: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The voxels of ``within`` whose 3-voxel median is in :data:`aspects.flags.BLOOD_HU` and
    :data:`aspects.flags.BLOOD_MIRROR_EXCESS_HU` above the median at their mirror."""
    low, high = BLOOD_HU
    # the median is in [low, high] only where at least 14 of the 27 voxels are >= low and 14 <= high
    share = lambda m: ndi.uniform_filter(m.astype(np.float32), size=3, mode="mirror")  # noqa: E731
    maybe = within & (share(hu >= low) > 13.5 / 27) & (share(hu <= high) > 13.5 / 27)
    if not maybe.any():
        return maybe
    both = maybe | np.flip(maybe, axis=2)  # the candidates and their mirrors
    smooth = np.zeros(hu.shape, np.float32)
    smooth[both] = median3_at(hu, both)
    return maybe & (smooth >= low) & (smooth <= high) & (smooth - np.flip(smooth, axis=2) >= BLOOD_MIRROR_EXCESS_HU)


def extra_axial_blood(head_hu: np.ndarray, region: np.ndarray, spacing_mm: Sequence[float],
                      scanned: Optional[np.ndarray] = None, min_ml: float = MIN_EXTRA_AXIAL_ML) -> np.ndarray:
    """Boolean (z, y, x): blood between the brain and the skull (see the module docstring) in the
    unstripped head ``head_hu`` on the aligned grid (``spacing_mm`` x, y, z), within ``region``
    (:func:`search_region`) and the ``scanned`` field, in components of at least ``min_ml`` (the
    calibration tool, ``aspects-extra-axial-calibration``, asks for every component)."""
    out = np.zeros(head_hu.shape, bool)
    within = region.astype(bool)
    if scanned is not None:
        within = within & scanned.astype(bool)
    bone = head_hu > BONE_HU
    if not within.any() or not bone.any():
        return out
    # the work is done on the rows and slices the search reaches (whole rows: the mirror is in them)
    zs, ys = np.nonzero(within.any(axis=2)), np.nonzero(within.any(axis=(0, 2)))
    box = (slice(max(0, zs[0].min() - 1), zs[0].max() + 2), slice(max(0, ys[0].min() - 1), ys[0].max() + 2))
    hyper = _blood_like(head_hu[box], within[box])
    if not hyper.any():
        return out
    # the nearest bone of each candidate (the bone's surface voxels hold it): how far, which way
    sampling = np.asarray(tuple(float(s) for s in spacing_mm)[::-1])
    surface = np.argwhere(bone & ~ndi.binary_erosion(bone)) * sampling
    at = np.argwhere(hyper) + np.array([box[0].start, box[1].start, 0])
    dist, nearest = cKDTree(surface).query(at * sampling)
    towards = surface[nearest] - at * sampling
    ok = (np.abs(towards[:, 0]) <= STEEP * np.maximum(dist, 1e-6)) & (dist > FROM_BONE_MM)
    found = np.zeros(head_hu.shape, bool)
    found[tuple(at[ok].T)] = True
    found[box] &= fill_in_plane(bone[box]) & ~bone[box]  # inside the skull: each slice's bone ring filled
    labels, n = ndi.label(found, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return out
    # against the bone: components with a voxel within TOUCH_MM of it
    close = at[ok & (dist <= TOUCH_MM)]
    touching = np.zeros(n + 1, bool)
    touching[np.unique(labels[tuple(close.T)])] = True
    touching[0] = False
    return components_over(touching[labels], voxel_volume_ml(spacing_mm), min_ml, np.ones((3, 3, 3), bool))
