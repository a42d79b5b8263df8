"""Skull stripping for non-contrast head CT by thresholds and morphology.

Works on the ~2 mm working grid (``aspects.preprocess.to_working_grid``), where a few
voxel-wise operations on ~1 M voxels take well under a second. Steps:

1. bone = HU > :data:`BONE_HU`, dilated by :data:`BONE_DILATE` voxel (partial-volume rim of the skull);
2. candidate = HU in :data:`BRAIN_HU` outside that bone (brain, CSF, blood; not fat, air, bone);
3. open the candidate by eroding :data:`CUT_VOXELS` voxels, keep the largest connected component
   and dilate back inside the candidate: this cuts the thin soft-tissue bridges through the
   orbits and skull base that otherwise join the brain to scalp and neck muscles;
4. fill holes (3-D and slice by slice: ventricles, calcified choroid plexus);
5. optionally erode :data:`FINAL_ERODE_VOXELS` voxels (off: the bone dilation of step 1 already
   drops the partial-volume layer, and a further 2 mm would cut the cortex of M1-M6).

The preprocessing later intersects the result with the registered template brain (dilated), which
removes what is left of the neck below the foramen magnum.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# Cortical bone is > 300 HU; 160 keeps thin, partial-volumed skull at 5 mm slice thickness out
# while staying far above fresh blood (50-90 HU) and grey matter (~40 HU).
BONE_HU = 160.0
# Soft-tissue window inside the skull: CSF (0-15) down to -15 for noise, up to 130 for dense
# haemorrhage and partial-volume calcification; fat (-100) and air are outside.
BRAIN_HU = (-15.0, 130.0)
# 2 voxels (~4 mm) of erosion separate the brain from soft tissue joined to it through the
# orbits / foramina without erasing thin gyri for good (they come back with the dilation).
CUT_VOXELS = 2
FINAL_ERODE_VOXELS = 0
BONE_DILATE = 1  # voxels


def ball(radius: int) -> np.ndarray:
    """Boolean ball of ``radius`` voxels (the strip's structuring element)."""
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return (zz**2 + yy**2 + xx**2) <= radius**2 + 0.5


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a boolean mask (empty stays empty)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


# In-plane 4-connectivity only: one 3-D call fills the holes of every axial slice separately.
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def fill_in_plane(mask: np.ndarray) -> np.ndarray:
    """Each axial slice's holes filled (a hole is what its slice's edge cannot reach in the plane;
    the first and last slices are edge throughout)."""
    return ndi.binary_fill_holes(mask, structure=_IN_PLANE)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """3-D hole filling, then per axial slice (closes ventricles open at one slice edge)."""
    return fill_in_plane(ndi.binary_fill_holes(mask))


def strip_skull(hu_zyx: np.ndarray, cut_voxels: int = CUT_VOXELS) -> np.ndarray:
    """Boolean brain mask of a head CT ``(z, y, x)`` HU array on a ~2 mm isotropic grid;
    ``cut_voxels``: the opening's radius of step 3."""
    bone = hu_zyx > BONE_HU
    if BONE_DILATE:
        bone = ndi.binary_dilation(bone, structure=ball(BONE_DILATE))
    cand = (hu_zyx >= BRAIN_HU[0]) & (hu_zyx <= BRAIN_HU[1]) & ~bone
    core = ndi.binary_erosion(cand, structure=ball(cut_voxels))
    core = largest_component(core)
    if not core.any():
        return core
    brain = ndi.binary_dilation(core, structure=ball(cut_voxels)) & cand
    brain = largest_component(brain)
    brain = fill_holes(brain)
    # Slice-wise filling also closes over bone that the brain surrounds in an axial slice (petrous
    # ridge and clivus between temporal lobes and cerebellum): dense bone is never brain.
    brain &= hu_zyx <= BONE_HU
    if FINAL_ERODE_VOXELS:
        brain = ndi.binary_erosion(brain, structure=ball(FINAL_ERODE_VOXELS))
        brain = largest_component(brain)
    return brain
