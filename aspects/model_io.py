"""The models' input: array layout, intensity window and mirror channel, one implementation for
the app, the bundles' configs and the tests (so training and inference cannot drift apart).

Models see the template-aligned volume (``aspects.preprocess``) as ``(x, y, z)`` (the aligned
``(z, y, x)`` array transposed: the order MONAI's ``LoadImage`` gives for the aligned NIfTI),
HU windowed by :func:`normalise`; the infarct model also sees the contralateral mirror.
"""

from __future__ import annotations

from typing import Optional

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


def add_mirror(x_cxyz: np.ndarray) -> np.ndarray:
    """``(1, X, Y, Z)`` -> ``(2, X, Y, Z)``: the image and its contralateral mirror (flipped in x;
    the aligned grid is symmetric about its mid-sagittal plane), after Ostmeier et al. 2022."""
    x = np.asarray(x_cxyz, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a one-channel (1, X, Y, Z) image, got {x.shape}")
    return np.ascontiguousarray(np.concatenate([x, np.flip(x, axis=1)]))


def model_input(hu_xyz: np.ndarray, with_mirror: bool) -> np.ndarray:
    """The model input ``(C, X, Y, Z)`` float32 of an aligned HU volume in model layout:
    :func:`normalise`, plus the mirror channel when ``with_mirror`` (the infarct model)."""
    x = normalise(hu_xyz)[None]
    return add_mirror(x) if with_mirror else np.ascontiguousarray(x)


def infarct_input(hu_zyx: np.ndarray, counterpart_zyx: Optional[np.ndarray] = None) -> np.ndarray:
    """The infarct model's batch ``(1, 2, X, Y, Z)`` of an aligned HU volume ``(z, y, x)``: model
    layout, :func:`normalise` and the mirror channel (the app, its tools and the GPU check build it here).

    ``counterpart_zyx``: the second channel is this volume (HU, aligned grid) instead of the plain
    mirror: the contralateral counterpart deformed onto the image (``aspects.asymmetry.contralateral``),
    for a model trained on it (its metadata's channel 1 is ``"contra"``)."""
    if counterpart_zyx is None:
        return model_input(to_model_layout(hu_zyx), with_mirror=True)[None]
    pair = [normalise(to_model_layout(hu_zyx)), normalise(to_model_layout(counterpart_zyx))]
    return np.ascontiguousarray(np.stack(pair))[None]
