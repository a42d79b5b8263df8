"""The fast paths give the slow path's numbers (issue 14: same answers, faster)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from aspects import region_atlas


def _smooth_volume(seed: int, shape=(48, 56, 48)) -> np.ndarray:
    """A brain-like HU volume on a 2 mm grid: smooth texture inside an ellipsoid, 0 outside."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = zz**2 / 0.6 + yy**2 / 0.7 + xx**2 / 0.6 < 1.0
    texture = ndi.gaussian_filter(rng.normal(0.0, 1.0, shape), 2.0)
    return np.where(inside, 30.0 + 40.0 * texture, 0.0).astype(np.float32)


def test_the_region_warp_optimiser_updates_exactly_as_torch_optim_adam(monkeypatch):
    """The LNCC fit's own Adam avoids importing torch.optim (torch._dynamo); its displacement
    field must be bit-identical to torch.optim.Adam's, or the regions would change."""
    image, template = _smooth_volume(1), _smooth_volume(2)
    ours = region_atlas.fit_displacement(image, template, steps=12)
    monkeypatch.setattr(region_atlas, "Adam", lambda param, lr: torch.optim.Adam([param], lr=lr))
    reference = region_atlas.fit_displacement(image, template, steps=12)
    assert ours.abs().max() > 0  # the fit moved: the comparison is not of two zero fields
    assert torch.equal(ours, reference)
