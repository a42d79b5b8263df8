"""The symmetry-aware input during training: the aligned image plus its contralateral mirror
(Ostmeier et al. 2022; Sun et al. 2024), added after the spatial augmentation by
``aspects.model_io.add_mirror``, the function the app's model input uses too.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from aspects.model_io import add_mirror


def with_mirror(image_cxyz) -> np.ndarray:
    """``(1, X, Y, Z)`` -> ``(2, X, Y, Z)``: channel 0 the image, channel 1 its mirror."""
    return add_mirror(image_cxyz.detach().cpu() if isinstance(image_cxyz, torch.Tensor) else image_cxyz)


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
