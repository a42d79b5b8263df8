"""Blood between the brain and the skull (aspects.extra_axial): a one-sided crescent of acute blood
against the inner table is found on its side; the skull's partial volume, a midline sinus, a
symmetric dense rim, a one-sided rim within the bone's partial volume and blood off the searched
region are not."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from aspects.extra_axial import MIN_EXTRA_AXIAL_ML, extra_axial_blood, search_region
from aspects.skull_cover import convexity

SPACING = 2.0


def _head(shape=(80, 96, 96)):
    """(HU, brain, radius mm, coordinates) on a 2 mm grid (z, y, x): a 72 mm brain ball (30 HU) in
    a 5 mm skull (1000 HU) with a 2 mm rim of partial volume (160 -> 60 HU), air beyond."""
    z, y, x = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, np.float32) - 1) / 2
    r = SPACING * np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    hu = np.full(shape, -1000.0, np.float32)
    hu[r < 79.0] = 1000.0
    hu[r < 74.0] = 120.0  # the inner table's partial volume
    hu[r < 72.0] = 30.0
    brain = r < 72.0
    return hu, brain, r, (z, y, x, centre)


def _region(brain):
    return search_region(convexity(brain), None, (SPACING,) * 3)


def _crescent(r, x, c, side: str, thickness_mm: float):
    """Voxels within ``thickness_mm`` of the inner table on one side's lateral convexity
    (x above the middle is the patient's left)."""
    lateral = (x - c[2]) * SPACING
    half = lateral > 25.0 if side == "left" else lateral < -25.0
    return half & (r < 72.0) & (r >= 72.0 - thickness_mm)


def test_a_one_sided_acute_crescent_is_found_on_its_side():
    hu, brain, r, (z, y, x, c) = _head()
    region = _region(brain)
    assert not extra_axial_blood(hu, region, (SPACING,) * 3).any()  # a normal head
    blood = _crescent(r, x, c, "left", 10.0)
    hu[blood] = 65.0
    found = extra_axial_blood(hu, region, (SPACING,) * 3)
    ml = float(found.sum()) * SPACING**3 / 1000.0
    assert ml >= MIN_EXTRA_AXIAL_ML
    assert (x[found] > c[2]).all()  # the left side only
    # in the crescent, nothing else (the 3-voxel median reaches one voxel past its edge)
    assert not (found & ~ndimage.binary_dilation(blood)).any()
    # where the series has no slices nothing is found
    assert not extra_axial_blood(hu, region, (SPACING,) * 3, np.zeros(hu.shape, bool)).any()


def test_symmetric_dense_rims_a_midline_sinus_and_a_thin_crescent_are_not_found():
    hu, brain, r, (z, y, x, c) = _head()
    region = _region(brain)
    # dense dura / partial volume 6 mm wide on both sides: symmetric, so not a haematoma
    both = _crescent(r, x, c, "left", 6.0) | _crescent(r, x, c, "right", 6.0)
    sym = hu.copy()
    sym[both] = 65.0
    assert not extra_axial_blood(sym, region, (SPACING,) * 3).any()
    # a superior sagittal sinus: 60 HU against the inner table at the midline, one of a kind
    sinus = hu.copy()
    sinus[(np.abs(x - c[2]) * SPACING < 8.0) & (r < 72.0) & (r >= 62.0) & (z > c[0])] = 60.0
    assert not extra_axial_blood(sinus, region, (SPACING,) * 3).any()
    # a one-sided rim of 65 HU within 3 mm of the bone (where the inner table's partial volume
    # lies on the 2 mm grid) is not found
    thin = hu.copy()
    thin[_crescent(r, x, c, "left", 1.0)] = 65.0
    assert not extra_axial_blood(thin, region, (SPACING,) * 3).any()
    # the same crescent as the first test, but outside the searched region (the skull base)
    low = hu.copy()
    low[_crescent(r, x, c, "left", 10.0)] = 65.0
    assert not extra_axial_blood(low, np.zeros_like(region), (SPACING,) * 3).any()


def test_blood_inside_the_brain_away_from_the_bone_is_not_extra_axial():
    """A parenchymal haematoma 2 cm inside the brain is the blood finding's, not this one's."""
    hu, brain, r, (z, y, x, c) = _head()
    region = _region(brain)
    deep = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2] - 20) ** 2) * SPACING < 12.0
    assert deep.any() and (r[deep] < 55.0).all()
    hu[deep] = 65.0
    assert not extra_axial_blood(hu, region, (SPACING,) * 3).any()
