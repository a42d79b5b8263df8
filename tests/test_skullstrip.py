"""The skull strip's opening: what joins soft tissue of the face to the brain and what cuts it."""

from __future__ import annotations

import numpy as np

from aspects.preprocess import REGISTRATION_APPENDAGE_ML, REGISTRATION_CUT_VOXELS, opened_brain
from aspects.skullstrip import CUT_VOXELS, strip_skull


def _brain_with_a_bridge_to_the_face(bridge_radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2 mm grid: a brain (ball, 30 HU) in a skull (1000 HU), and outside it a block of face soft
    tissue (40 HU) joined to the brain through a round gap in the skull base of ``bridge_radius``
    voxels (a faint skull base on an averaged template: soft tissue where bone should be)."""
    z, y, x = np.mgrid[:64, :64, :64].astype(float)
    r = np.sqrt((z - 36) ** 2 + (y - 32) ** 2 + (x - 32) ** 2)
    hu = np.full(r.shape, -1000.0)
    hu[r <= 26] = 1000.0  # skull
    brain = r <= 22
    hu[brain] = 30.0
    face = (z >= 2) & (z <= 9) & (np.abs(y - 32) <= 14) & (np.abs(x - 32) <= 14)
    hu[face] = 40.0
    bridge = (z > 9) & (z < 16) & ((y - 32) ** 2 + (x - 32) ** 2 <= bridge_radius**2)
    hu[bridge] = 35.0
    return hu, brain, face


def test_the_registration_pass_sees_the_brain_without_its_bridge_to_the_face():
    hu, brain, face = _brain_with_a_bridge_to_the_face(bridge_radius=3.2)  # ~13 mm across
    strip = strip_skull(hu)
    opened = strip_skull(hu, cut_voxels=REGISTRATION_CUT_VOXELS)
    assert REGISTRATION_CUT_VOXELS > CUT_VOXELS
    # the app's strip (4 mm opening) keeps the face joined to the brain ...
    assert strip[face].mean() > 0.85 and strip[brain].mean() > 0.85  # (its edge: the bone's rim)
    # ... the registration's (6 mm) cuts it off and keeps the brain
    assert not opened[face].any() and opened[brain].mean() > 0.99 * strip[brain].mean()
    assert np.array_equal(strip_skull(hu), strip)  # the default is the app's opening


def test_a_narrow_bridge_is_cut_by_the_apps_own_strip():
    hu, brain, face = _brain_with_a_bridge_to_the_face(bridge_radius=2.0)  # ~8 mm across
    strip = strip_skull(hu)
    assert not strip[face].any() and strip[brain].mean() > 0.85


def test_a_strip_joined_to_the_face_is_registered_again_opened_and_no_other():
    # joined to the face (a block of ~60 ml): a second registration sees the brain without it
    hu, brain, face = _brain_with_a_bridge_to_the_face(bridge_radius=3.2)
    strip = strip_skull(hu)
    opened, appendage_ml = opened_brain(hu, strip)
    assert appendage_ml > REGISTRATION_APPENDAGE_ML and opened is not None
    assert np.array_equal(opened, strip_skull(hu, cut_voxels=REGISTRATION_CUT_VOXELS)) and not opened[face].any()
    # no bridge (the real heads: at most 0.3 ml cut off): no second registration, the head registers as before
    hu, brain, face = _brain_with_a_bridge_to_the_face(bridge_radius=2.0)
    opened, appendage_ml = opened_brain(hu, strip_skull(hu))
    assert appendage_ml < 1.0 and opened is None
    # the phantom generator registers its real heads with the strip's own opening: never twice
    assert opened_brain(hu, strip_skull(hu), cut_voxels=CUT_VOXELS) == (None, 0.0)
