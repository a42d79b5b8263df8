"""The skull-defect QC (aspects.skull_cover): a brain whose convexity has no bone near it over a
hemicraniectomy's area is called out by side; an intact skull, a burr hole and an unscanned top
are not."""

from __future__ import annotations

import numpy as np

from aspects.skull_cover import DEFECT_CM2, convexity, defect_reasons, uncovered_convexity

SPACING = 2.0


def _head(shape=(80, 96, 96)):
    """(HU array, brain) on a 2 mm grid (z, y, x): a 70 mm brain ball (30 HU) in a 5 mm skull
    (1000 HU) 4 mm outside it (CSF between), air beyond."""
    z, y, x = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, np.float32) - 1) / 2
    r = SPACING * np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    hu = np.full(shape, -1000.0, np.float32)
    hu[r < 79.0] = 1000.0
    hu[r < 74.0] = 5.0
    brain = r < 70.0
    hu[brain] = 30.0
    return hu, brain, (z, y, x, centre)


def test_an_intact_skull_covers_the_whole_convexity():
    hu, brain, _ = _head()
    surface = convexity(brain)
    assert surface.any() and not (surface & ~brain).any()
    # the lower 30 % of the brain's height (skull base, foramen magnum) is not convexity
    z = np.nonzero(surface.any(axis=(1, 2)))[0]
    assert z[0] >= np.nonzero(brain.any(axis=(1, 2)))[0][0] + 0.3 * 69
    cover = uncovered_convexity(hu, surface, np.ones_like(brain), SPACING)
    assert cover == {"right": 0.0, "left": 0.0} and defect_reasons(cover) == []


def test_a_hemicraniectomy_is_found_on_its_side_and_a_burr_hole_is_not():
    hu, brain, (z, y, x, c) = _head()
    surface = convexity(brain)
    inside = np.ones_like(brain)
    skull = hu > 500
    # a left flap (x above the middle is the patient's left) over the upper half: bone -> scalp
    flap = skull & (x > c[2] + 5) & (z > c[0])
    cut = hu.copy()
    cut[flap] = 45.0
    cover = uncovered_convexity(cut, surface, inside, SPACING)
    assert cover["left"] >= DEFECT_CM2 and cover["right"] < 1.0, cover
    assert defect_reasons(cover) == [f"skull defect: {cover['left']:.0f} cm2 of the left convexity without bone (craniectomy?)"]
    # a 14 mm burr hole is covered by its rim
    hole = skull & ((y - c[1]) ** 2 + (x - c[2]) ** 2 < (7.0 / SPACING) ** 2) & (z > c[0])
    burr = hu.copy()
    burr[hole] = 45.0
    assert max(uncovered_convexity(burr, surface, inside, SPACING).values()) == 0.0
    # where the series has no slices nothing is judged: the flap above an unscanned top counts less
    low = z < c[0] + 10
    assert uncovered_convexity(cut, surface, low, SPACING)["left"] < cover["left"]
    assert uncovered_convexity(cut, surface, np.zeros_like(brain), SPACING) == {"right": 0.0, "left": 0.0}


def test_no_bone_at_all_leaves_every_scanned_convexity_voxel_uncovered():
    hu, brain, _ = _head()
    hu[hu > 500] = 45.0
    surface = convexity(brain)
    cover = uncovered_convexity(hu, surface, np.ones_like(brain), SPACING)
    assert abs(sum(cover.values()) - float(surface.sum()) * SPACING**2 / 100.0) < 0.2
