"""Array layout and intensity normalisation shared by the app and the training bundles.

Models see the template-aligned volume (see ``aspects.preprocess``): the ``(z, y, x)`` numpy array
of the aligned image transposed to ``(x, y, z)`` (the order MONAI's ``LoadImage`` gives for the
aligned NIfTI), HU windowed by :func:`normalise`. The bundles in ``train/`` import these same
functions so that training and inference cannot drift apart.
"""

from __future__ import annotations

import numpy as np

# Brain window for models: 0 HU (CSF) .. 80 HU (fresh blood ~ 60-80 HU) covers every tissue the
# models must tell apart (infarct 15-35 HU, grey ~40, white ~30) at full contrast; bone and air
# are already removed by skull stripping (0 outside the brain).
HU_WINDOW = (0.0, 80.0)


def normalise(hu: np.ndarray) -> np.ndarray:
    """HU -> float32 in [0, 1]: clip to :data:`HU_WINDOW` and scale linearly."""
    lo, hi = HU_WINDOW
    return ((np.clip(np.asarray(hu, dtype=np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def mirror(arr_zyx: np.ndarray) -> np.ndarray:
    """Contralateral mirror of an aligned ``(z, y, x)`` array (the aligned grid is symmetric in x)."""
    return np.ascontiguousarray(np.flip(arr_zyx, axis=2))


def to_model_layout(arr_zyx: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` -> ``(x, y, z)`` (contiguous), the spatial order models use."""
    return np.ascontiguousarray(np.transpose(arr_zyx, (2, 1, 0)))


def from_model_layout(arr_xyz: np.ndarray) -> np.ndarray:
    """``(x, y, z)`` -> ``(z, y, x)``: inverse of :func:`to_model_layout`."""
    return np.ascontiguousarray(np.transpose(arr_xyz, (2, 1, 0)))
