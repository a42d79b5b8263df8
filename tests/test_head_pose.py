"""aspects.head_pose: a head turned far about its long axis starts the rigid registration turned;
any other head starts from the centres of mass as before (its answers unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from aspects.head_pose import YAW_START_DEG, axial_axis, turned_start
from aspects_research.tools.qc_calibration import rotated


def _brain(long_mm: float = 80.0, wide_mm: float = 65.0, origin=(-90.0, -100.0, -60.0)) -> sitk.Image:
    """An ellipsoid 'brain' (40 HU in air) on a 2 mm grid, long along y (front to back)."""
    z, y, x = np.mgrid[:60, :100, :90].astype(float)
    centre = (30.0, 52.0, 43.0)
    r = ((x - centre[2]) * 2 / wide_mm) ** 2 + ((y - centre[1]) * 2 / long_mm) ** 2 + ((z - centre[0]) * 2 / 50.0) ** 2
    img = sitk.GetImageFromArray(np.where(r <= 1.0, 40.0, -1000.0).astype(np.float32))
    img.SetSpacing((2.0, 2.0, 2.0))
    img.SetOrigin(origin)
    return img


def _mask(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img) > -480.0


@pytest.mark.parametrize("degrees", [-40.0, -12.0, 0.0, 25.0, 35.0])
def test_the_long_axis_follows_a_turn_of_the_head(degrees):
    head = rotated(_brain(), "yaw", degrees)
    angle, centre = axial_axis(_mask(head), head)
    # rotated(+d) leaves the long axis d degrees from +y (back) towards +x (left)
    assert angle == pytest.approx(degrees, abs=1.5)
    com = head.TransformContinuousIndexToPhysicalPoint(np.argwhere(_mask(head)).mean(axis=0)[::-1].tolist())
    assert np.allclose(centre, com, atol=0.5)


def test_a_round_or_tiny_brain_has_no_long_axis():
    round_head = _brain(long_mm=70.0, wide_mm=70.0)
    assert axial_axis(_mask(round_head), round_head) is None
    tiny = np.zeros((60, 100, 90), bool)
    tiny[30, 50, 40:45] = True
    assert axial_axis(tiny, round_head) is None


def test_only_a_far_turn_gets_a_turned_start_and_it_lands_on_the_template():
    fixed = _brain(origin=(-88.0, -104.0, -58.0))  # the template, elsewhere in space
    for degrees in (0.0, 10.0, -(YAW_START_DEG - 3.0)):
        near = rotated(_brain(), "yaw", degrees)
        assert turned_start(axial_axis(_mask(fixed), fixed), _mask(near), near) == (None, 0.0), degrees  # as before
    far = rotated(_brain(), "yaw", 35.0)
    start, turn = turned_start(axial_axis(_mask(fixed), fixed), _mask(far), far)
    assert start is not None and turn == pytest.approx(-35.0, abs=1.5)  # the template's axis turned onto the head's
    # fixed -> moving points: the far-turned head resampled through the start lies on the template
    back = _mask(sitk.Resample(far, fixed, start, sitk.sitkLinear, -1000.0))
    dice = 2 * (back & _mask(fixed)).sum() / (back.sum() + _mask(fixed).sum())
    assert dice > 0.95, dice
    shifted_only = sitk.TranslationTransform(3, np.subtract(start.TransformPoint(start.GetCenter()), start.GetCenter()).tolist())
    plain = _mask(sitk.Resample(far, fixed, shifted_only, sitk.sitkLinear, -1000.0))
    assert 2 * (plain & _mask(fixed)).sum() / (plain.sum() + _mask(fixed).sum()) < dice - 0.05  # the turn is what lands it
