"""Haemorrhage and old-infarct flags on a symmetric synthetic aligned volume."""

import numpy as np
import pytest

from aspects.flags import haemorrhage_ml, image_flags, old_infarct_ml

SPACING = (2.0, 2.0, 2.0)


def brain(seed=0):
    """A symmetric ellipsoid 'brain' of 32 HU with a 3 HU noise, central ventricles of 8 HU."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:48, :64, :64]
    mask = ((z - 24) / 20) ** 2 + ((y - 32) / 28) ** 2 + ((x - 31.5) / 26) ** 2 <= 1
    hu = np.where(mask, 32.0, 0.0) + rng.normal(0, 3, mask.shape) * mask
    vent = ((z - 24) / 6) ** 2 + ((y - 32) / 10) ** 2 + ((x - 31.5) / 5) ** 2 <= 1
    hu[vent] = 8.0
    return hu.astype(np.float32), mask.astype(np.uint8)


def test_normal_symmetric_brain_has_no_flags():
    hu, mask = brain()
    assert image_flags(hu, mask, SPACING) == []


def test_haematoma_is_flagged_with_its_volume():
    hu, mask = brain()
    z, y, x = np.mgrid[:48, :64, :64]
    blob = ((z - 24) ** 2 + (y - 30) ** 2 + (x - 18) ** 2) <= 9  # r = 3 voxels (6 mm): ~0.9 ml
    hu[blob] = 70.0
    ml = haemorrhage_ml(hu, mask, SPACING)
    assert ml == pytest.approx(blob.sum() * 8e-3, rel=0.35)
    assert [f.name for f in image_flags(hu, mask, SPACING)] == ["haemorrhage_suspected"]


def test_old_infarct_is_flagged_but_symmetric_csf_is_not():
    hu, mask = brain()
    z, y, x = np.mgrid[:48, :64, :64]
    lesion = ((z - 24) ** 2 + (y - 20) ** 2 + (x - 15) ** 2) <= 25  # r = 5 voxels: ~4 ml, one side only
    hu[lesion] = 10.0
    assert old_infarct_ml(hu, mask, SPACING) > 1.0
    assert "old_infarct_suspected" in [f.name for f in image_flags(hu, mask, SPACING)]
    hu_sym = hu.copy()
    hu_sym[np.flip(lesion, axis=2)] = 10.0  # the same lesion on both sides reads as symmetric CSF
    assert old_infarct_ml(hu_sym, mask, SPACING) == 0.0


def test_acute_hypodensity_is_not_an_old_infarct():
    hu, mask = brain()
    z, y, x = np.mgrid[:48, :64, :64]
    lesion = ((z - 24) ** 2 + (y - 20) ** 2 + (x - 14) ** 2) <= 25
    hu[lesion] -= 6.0  # acute: 26 HU, still tissue
    assert image_flags(hu, mask, SPACING) == []
