"""A head turned far in the scanner: where to start the rigid registration.

The rigid stage starts from the centres of mass (no rotation), and Mattes mutual information
finds a turn of the head about its long axis (yaw) from there only so far: turned 30 degrees, the
real InVesalius head was lost (NCC 0.48, `low_confidence`, two false right regions) and a
template-head phantom degraded (NCC 0.77 -> 0.53), while 20 degrees and every pitch and roll up to
30 degrees registered as well as the head as given (session 36, docs/results.md). Patients are
positioned within a few degrees as a rule, but an agitated stroke patient is not always. So the
yaw of the brain is read from its own shape - the axial principal axis of the brain mask, a brain
being about 1.2 times longer front to back than wide (principal axes as the initial alignment:
Alpert et al. 1990) - and only a turn beyond :data:`YAW_START_DEG` against the template's brain
starts the registration turned by it. No study within the phantoms' pose range (yaw within 15
degrees on top of the head's own) comes near: the 196 studies of the test split, the fresh and
third draws, the early-change and the asymmetric-head sets read -20.4 to +17.2 degrees, so they
start as before and their answers do not change; the two failures above read 36 and 40.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

# A start turned by the brain's yaw is used beyond this (degrees, the brain's axis against the template's).
YAW_START_DEG = 25.0
# A brain whose axial outline is this close to round has no reliable long axis (ratio of the
# principal axes' lengths); adults' are 1.15-1.3.
MIN_ELONGATION = 1.08

Axis = Tuple[float, np.ndarray]  # :func:`axial_axis`: (degrees from +y towards +x, centre of mass in mm)


def axial_axis(mask: np.ndarray, image: sitk.Image) -> Optional[Axis]:
    """(angle in degrees of the mask's long axis in the patient's axial plane, measured from the
    front-back axis +y towards +x; its centre of mass in physical mm) of the voxels of ``mask``
    (z, y, x, on ``image``'s grid), or None when it has too few voxels or no clear long axis."""
    zyx = np.argwhere(mask)
    if zyx.shape[0] < 100:
        return None
    spacing = np.asarray(image.GetSpacing(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    points = np.asarray(image.GetOrigin(), float) + (zyx[:, ::-1] * spacing) @ direction.T  # physical x, y, z
    centre = points.mean(axis=0)
    xy = points[:, :2] - centre[:2]
    values, vectors = np.linalg.eigh(xy.T @ xy / len(xy))
    if values[0] <= 0 or math.sqrt(values[1] / values[0]) < MIN_ELONGATION:
        return None
    vx, vy = vectors[:, 1] if vectors[1, 1] >= 0 else -vectors[:, 1]
    return math.degrees(math.atan2(vx, vy)), centre


def axis_turn(fixed_axis: Axis, moving_axis: Axis) -> float:
    """The turn (degrees) about the head-foot axis that takes the template's long axis onto the
    patient's (both measured from +y towards +x)."""
    return fixed_axis[0] - moving_axis[0]


def turned_start(fixed_axis: Optional[Axis], moving_brain: np.ndarray, moving: sitk.Image,
                 min_turn_deg: float = YAW_START_DEG) -> Tuple[Optional[sitk.AffineTransform], float]:
    """(the rigid start (fixed -> moving points) that turns the template's brain about the head-foot
    axis onto the patient's and puts its centre of mass on theirs, that turn in degrees) when the
    two brains' long axes differ by more than ``min_turn_deg``; (None, 0.0) otherwise: start from
    the centres of mass. ``fixed_axis``: the template brain's :func:`axial_axis` (computed once)."""
    m = axial_axis(moving_brain, moving)
    if fixed_axis is None or m is None:
        return None, 0.0
    turn = axis_turn(fixed_axis, m)
    if abs(turn) <= min_turn_deg:
        return None, 0.0
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in fixed_axis[1]])
    tx.SetRotation(0.0, 0.0, math.radians(turn))
    tx.SetTranslation([float(v) for v in m[1] - fixed_axis[1]])
    start = sitk.AffineTransform(3)  # the registration's start is read as an affine transform
    start.SetMatrix(tx.GetMatrix())
    start.SetCenter(tx.GetCenter())
    start.SetTranslation(tx.GetTranslation())
    return start, turn
