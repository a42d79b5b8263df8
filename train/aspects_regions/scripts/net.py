"""Networks of the aspects_regions bundle.

``RegionNet`` runs a MONAI residual U-Net on the aligned volume average-pooled by ``factor``
(2 mm -> 4 mm by default) and upsamples the logits trilinearly back to the input grid. The
regions are large, smooth territories, so 4 mm features with interpolated logits lose little,
and training and inference cost an eighth: what makes CPU training and fast CPU inference possible.
The TorchScript contract holds: input ``(B, 1, X, Y, Z)`` at 2 mm, output ``(B, 21, X, Y, Z)``.

With ``coords`` the U-Net also sees three channels of normalised voxel coordinates (-1..1 along
x, y, z; CoordConv): in the template-aligned space a region is mostly a place, and a U-Net alone
has to infer position from the image content, which takes far more training than CPU allows.

``use_se`` adds squeeze-and-excitation after every encoder/decoder unit (DeepStroke, seed 001).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import ChannelSELayer
from monai.networks.nets import UNet
from torch import nn


class SEUNet(UNet):
    """``UNet`` whose down and up units are followed by a channel SE layer (reduction ratio 2)."""

    def _get_down_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        unit = super()._get_down_layer(in_channels, out_channels, strides, is_top)
        return nn.Sequential(unit, ChannelSELayer(self.dimensions, out_channels, r=2))

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        unit = super()._get_up_layer(in_channels, out_channels, strides, is_top)
        if is_top:  # the last unit emits logits: no gating there
            return unit
        return nn.Sequential(unit, ChannelSELayer(self.dimensions, out_channels, r=2))


class RegionNet(nn.Module):
    """Pool by ``factor`` -> U-Net -> trilinear upsampling of the logits to the input size.

    The bundle trains :meth:`inner` directly on volumes the data pipeline already pooled (cheaper
    than pooling in every step; :class:`PooledRegionNet`) and exports this whole module.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int = 2, norm: str = "instance", factor: int = 2, use_se: bool = False,
                 coords: bool = True):
        super().__init__()
        kind = SEUNet if use_se else UNet
        self.coords = bool(coords)
        self.net = kind(spatial_dims=3, in_channels=in_channels + (3 if self.coords else 0), out_channels=out_channels,
                        channels=channels, strides=strides, num_res_units=num_res_units, norm=norm)
        self.factor = int(factor)

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net (plus coordinate channels) on an already pooled volume: what training calls."""
        if self.coords:
            b, _, nx, ny, nz = x.shape
            axes = [torch.linspace(-1.0, 1.0, n, dtype=x.dtype, device=x.device) for n in (nx, ny, nz)]
            gx, gy, gz = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
            grid = torch.stack([gx, gy, gz])[None].expand(b, 3, nx, ny, nz)
            x = torch.cat([x, grid], dim=1)
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return self.inner(x)
        low = F.avg_pool3d(x, kernel_size=self.factor, stride=self.factor)
        return F.interpolate(self.inner(low), size=x.shape[2:], mode="trilinear", align_corners=False)


class PooledRegionNet(nn.Module):
    """Training view of a :class:`RegionNet`: its ``inner`` on volumes the data pipeline pooled."""

    def __init__(self, model: RegionNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.inner(x)
