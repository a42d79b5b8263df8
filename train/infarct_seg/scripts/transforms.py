"""The symmetry-aware input: the aligned image plus its contralateral mirror (seed 004 / 002).

The mirror is made by ``aspects.model_io.mirror`` on the ``(z, y, x)`` array, exactly as the app
does, so the channel order and flip axis cannot drift between training and inference.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from aspects.model_io import from_model_layout, mirror, to_model_layout


def with_mirror(image_cxyz) -> np.ndarray:
    """``(1, X, Y, Z)`` -> ``(2, X, Y, Z)``: channel 0 the image, channel 1 its mirror."""
    arr = np.asarray(image_cxyz.detach().cpu() if isinstance(image_cxyz, torch.Tensor) else image_cxyz, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"expected a one-channel (1, X, Y, Z) image, got {arr.shape}")
    mirrored = to_model_layout(mirror(from_model_layout(arr[0])))
    return np.stack([arr[0], mirrored])


class MirrorChanneld(MapTransform):
    """Dictionary transform: replace ``keys`` by ``[image, mirror]`` two-channel arrays (full volume)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            out = torch.as_tensor(with_mirror(d[key]))
            # keep the geometry (the channel count changes, the grid does not)
            d[key] = MetaTensor(out, meta=d[key].meta) if isinstance(d[key], MetaTensor) else out
        return d
