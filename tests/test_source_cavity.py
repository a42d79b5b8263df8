"""An old infarct's cavity measured on thick source slices (aspects.source_cavity) and what the
old-rim rule does with it (aspects.flags.with_cavity), on a synthetic 5 mm series."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from aspects.flags import OLD_INFARCT_HU, OLD_MIRROR_HU, acute_only, find, image_flags, mirror_tissue_hu, white_matter_hu, with_cavity
from aspects.source_cavity import compact_in_plane, csf_in_plane, source_cavity
from tests.support.slab_grid import coords, grid, registered_study

PIXEL, SLICE, ALIGNED = 0.5, 5.0, 2.0
EXTENT = (128.0, 128.0, 100.0)  # mm (x, y, z); the mid-sagittal plane at x = 64 mm


def _grid(step_xy: float, step_z: float) -> sitk.Image:
    return grid(step_xy, step_z, EXTENT)


def _head(img: sitk.Image, cavity: bool, sulcus: bool, rng: np.random.Generator, tissue_hu: float = 30.0) -> np.ndarray:
    """``tissue_hu`` ellipsoid brain (noise 2 HU), 0 outside; a cortical cavity (5 HU cylinder 9 mm
    across, 20 mm tall) on the left, a 1.5 mm sulcus-like CSF sheet on the right, neither mirrored."""
    z, y, x = coords(img)
    brain = ((x - 64) / 55) ** 2 + ((y - 64) / 58) ** 2 + ((z - 50) / 45) ** 2 <= 1
    hu = np.where(brain, tissue_hu + rng.normal(0.0, 2.0, brain.shape), 0.0)
    if cavity:
        hu[((x - 104) ** 2 + (y - 64) ** 2 <= 4.5 ** 2) & (np.abs(z - 50) <= 10)] = 5.0
    if sulcus:
        hu[(np.abs(x - 24) <= 0.75) & (np.abs(y - 100) <= 8) & (np.abs(z - 50) <= 10)] = 5.0
    return hu.astype(np.float32)


def _study(cavity: bool = True, sulcus: bool = True, tissue_hu: float = 30.0):
    """(Preprocessed, aligned brain, aligned acute mask beside the cavity): aligned space is the
    source's physical space (identity transform), as after a perfect registration."""
    rng = np.random.default_rng(7)
    src, on = _grid(PIXEL, SLICE), _grid(ALIGNED, ALIGNED)
    z, y, x = coords(on)
    brain = ((x - 64) / 55) ** 2 + ((y - 64) / 58) ** 2 + ((z - 50) / 45) ** 2 <= 1
    pre = registered_study(_head(src, cavity, sulcus, rng, tissue_hu), src, on, (1.0, 1.0, 2.0), brain)
    arr = sitk.GetArrayFromImage(pre.aligned)
    # an acute-mask component as the model gives it around an old infarct: the hypodense rim
    # 2-8 mm around the cavity, in the left hemisphere (x > 64 mm)
    d = np.hypot(x - 104, y - 64)
    acute = (d > 4.0) & (d <= 12.0) & (np.abs(z - 50) <= 12) & brain & (x > 66)
    return pre, arr, brain, acute


def test_median_of_nine_is_counted_exactly():
    rng = np.random.default_rng(1)
    hu = rng.normal(12.0, 4.0, (3, 40, 50)).astype(np.float32)
    expected = ndimage.median_filter(hu, size=(1, 3, 3), mode="nearest") < 12.0
    np.testing.assert_array_equal(csf_in_plane(hu, 12.0), expected)


def test_a_cavity_survives_the_opening_and_a_sulcus_does_not():
    yy, xx = np.mgrid[:80, :80] * PIXEL
    hole = (xx - 10) ** 2 + (yy - 20) ** 2 <= 4.5 ** 2  # 9 mm across
    sheet = (np.abs(xx - 30) <= 0.75) & (np.abs(yy - 20) <= 12)  # 1.5 mm wide
    kept = compact_in_plane((hole | sheet)[None], PIXEL)[0]
    assert kept[hole].mean() > 0.9
    assert not kept[sheet].any()


def test_thick_slice_cavity_found_beside_the_acute_mask_and_its_rim_not_scored():
    pre, hu, brain, acute = _study()
    source_before = sitk.GetArrayFromImage(pre.source).copy()
    cavity = source_cavity(pre, acute, brain)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(pre.source), source_before)  # input unchanged
    ml = cavity.sum() * ALIGNED ** 3 / 1000.0
    assert 0.5 <= ml <= 1.6  # the 1.3 ml cylinder, as the 2 mm grid holds it
    z, y, x = coords(pre.aligned)
    assert np.all(np.hypot(x[cavity] - 104, y[cavity] - 64) <= 6.0)  # the cavity, not the sulcus
    found = find(hu, brain.astype(np.uint8), (ALIGNED,) * 3)
    marked = with_cavity(found, cavity, acute)
    assert "old_infarct_suspected" in [f.name for f in image_flags(marked)]
    assert acute_only(acute, found).sum() == acute.sum()  # without the cavity: scored as acute
    assert acute_only(acute, marked).sum() == 0  # with it: the old infarct's rim, not scored


def test_a_sulcus_beside_an_acute_lesion_is_no_cavity():
    pre, hu, brain, _ = _study(cavity=False)
    z, y, x = coords(pre.aligned)
    acute = (np.hypot(x - 30, y - 100) <= 8) & (np.abs(z - 50) <= 10) & brain  # around the sulcus
    cavity = source_cavity(pre, acute, brain)
    assert not cavity.any()  # the unmirrored CSF sheet (1.5 mm) is a sulcus, not a cavity
    found = find(hu, brain.astype(np.uint8), (ALIGNED,) * 3)
    assert with_cavity(found, cavity, acute) is found


def test_a_cavity_far_from_the_acute_mask_is_not_looked_for():
    pre, hu, brain, acute = _study()
    z, y, x = coords(pre.aligned)
    far = (np.hypot(x - 80, y - 30) <= 6) & (np.abs(z - 50) <= 6) & brain
    assert not source_cavity(pre, far, brain).any()
    assert not source_cavity(pre, np.zeros_like(acute), brain).any()


@pytest.mark.parametrize("counterpart_hu", [10.0, 30.0])
def test_the_counterpart_decides_whether_csf_is_a_cavity(counterpart_hu):
    """Where the other hemisphere is CSF too (a ventricle, a symmetric fissure) it is anatomy."""
    pre, hu, brain, acute = _study()
    counterpart = np.full(hu.shape, counterpart_hu, np.float32)
    assert source_cavity(pre, acute, brain, counterpart).any() == (counterpart_hu >= 22.0)


def test_on_a_head_that_reads_low_the_mirror_is_tissue_relative_to_its_white_matter():
    """A scanner whose brain reads 21 HU (the real InVesalius head's white matter): at the fixed
    22 HU floor the cavity's mirror is not "tissue" and the old infarct's rim is scored as acute;
    the floor of the study's own white matter (find) keeps the cavity and the rim unscored."""
    pre, hu, brain, acute = _study(sulcus=False, tissue_hu=21.0)
    found = find(hu, brain.astype(np.uint8), (ALIGNED,) * 3)
    assert 15.0 < found.mirror_floor_hu < 18.0  # the lower quartile of 21 +- 2 HU tissue, less 4 HU
    assert not source_cavity(pre, acute, brain).any()  # the fixed floor: no cavity, the rim scored
    cavity = source_cavity(pre, acute, brain, mirror_floor_hu=found.mirror_floor_hu)
    assert 0.5 <= cavity.sum() * ALIGNED ** 3 / 1000.0 <= 1.6
    marked = with_cavity(found, cavity, acute)
    assert "old_infarct_suspected" in [f.name for f in image_flags(marked)]
    assert acute_only(acute, marked).sum() == 0


def test_a_calibrated_head_keeps_the_fixed_mirror_floor():
    _, hu, brain, _ = _study()
    assert find(hu, brain.astype(np.uint8), (ALIGNED,) * 3).mirror_floor_hu == OLD_MIRROR_HU


def test_the_mirror_floor_follows_white_matter_only_downwards_and_stays_above_csf():
    assert mirror_tissue_hu(None) == OLD_MIRROR_HU  # no tissue to measure: the fixed floor
    assert mirror_tissue_hu(30.0) == OLD_MIRROR_HU  # a head reading higher keeps 22 HU
    assert mirror_tissue_hu(21.3) == pytest.approx(17.3)  # the InVesalius head
    assert mirror_tissue_hu(12.0) == OLD_INFARCT_HU  # a badly calibrated series: never CSF-like
    hu = np.array([5.0, 10.0, 20.0, 22.0, 24.0, 26.0, 200.0], np.float32)  # CSF and calcium left out
    assert white_matter_hu(hu, np.ones(hu.shape, bool)) == pytest.approx(21.5)
    assert white_matter_hu(hu, np.zeros(hu.shape, bool)) is None
