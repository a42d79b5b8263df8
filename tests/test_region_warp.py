"""The region bundle's atlas warp: identity, a known shift, and the smoothness term's maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aspects_research.warp_loss import smoothness
from aspects_research.atlas_warp_net import AtlasWarpNet


def _net(labels: np.ndarray) -> AtlasWarpNet:
    template = (labels > 0).astype(np.float32)
    return AtlasWarpNet(21, (8, 16, 32), (2, 2), factor=2, disp_pool=1, atlas_labels=labels, template=template).eval()


def _blocks() -> np.ndarray:
    """(X, Y, Z) = 16^3 label map: label 3 in a cube, label 14 in another, background elsewhere."""
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[2:7, 4:12, 4:12] = 3
    lab[9:14, 4:12, 4:12] = 14
    return lab


def test_zero_displacement_returns_the_atlas_labels():
    lab = _blocks()
    net = _net(lab)
    with torch.no_grad():
        prob = net.warp(torch.zeros(1, 3, 8, 8, 8), [16, 16, 16])
        logits = net(torch.zeros(1, 1, 16, 16, 16))  # untrained head is zero: the same identity warp
    assert torch.allclose(prob.sum(1), torch.ones(1, 16, 16, 16))
    np.testing.assert_array_equal(prob.argmax(1)[0].numpy(), lab)
    np.testing.assert_array_equal(logits.argmax(1)[0].numpy(), lab)


def test_a_one_voxel_displacement_moves_the_labels_by_one_voxel():
    lab = _blocks()
    net = _net(lab)
    disp = torch.zeros(1, 3, 8, 8, 8)
    disp[:, 2] = 2.0 / 15  # channel 2 moves along X (grid_sample order z, y, x); one voxel of 16
    with torch.no_grad():
        moved = net.warp(disp, [16, 16, 16]).argmax(1)[0].numpy()
    # Output voxel i samples the atlas at i + 1: the labels move one voxel towards low X.
    np.testing.assert_array_equal(moved[:-1], lab[1:])


def test_atlas_labels_beyond_the_output_channels_are_refused():
    lab = _blocks()
    lab[0, 0, 0] = 21
    with pytest.raises(ValueError, match="outside 0..20"):
        _net(lab)


def test_smoothness_is_zero_for_a_constant_field_and_exact_for_a_ramp():
    assert smoothness(torch.full((1, 3, 4, 5, 6), 0.3)).item() == pytest.approx(0.0)
    # A field that grows by 1 voxel per voxel along X in channel 2 (normalised: 2 / size per voxel).
    nx = 4
    ramp = torch.zeros(1, 3, nx, 5, 6)
    ramp[:, 2] = torch.arange(nx, dtype=torch.float32).view(1, nx, 1, 1) * (2.0 / nx)
    # Only the X differences of channel 2 are non-zero, each (1 voxel)^2, and they are one third of the three axes' terms
    # (the mean over channels counts channel 2 as one of three).
    assert smoothness(ramp).item() == pytest.approx((1.0 / 3.0) / 3.0, rel=1e-5)
