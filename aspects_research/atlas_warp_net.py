"""Networks of the aspects_regions bundle.

``AtlasWarpNet`` segments the regions the way DeepStroke (Alig 2025) labelled them (atlas labels
carried onto each study by deformable registration), but with a network in place of SyN: a MONAI
residual U-Net looks at the aligned study (average-pooled to 4 mm) beside
the atlas template and predicts a smooth displacement field; the atlas label map, stored in the
model, is warped by it (``grid_sample``) onto the study at the input resolution. The output is
the log of the warped label fractions, i.e. logits whose argmax is a label value.

Why a warp rather than per-voxel classification: in the aligned space every region is the atlas
region moved by a few millimetres, so the network only has to learn a low-dimensional, smooth
displacement, which trains in CPU-hours; the regions keep the atlas's shape, order and
left/right identity by construction, and the output cannot hold islands or swapped sides.
A U-Net classifying voxels (the bundle's first design, kept in the changelog) reached a mean
Dice of 0.40 after the same CPU budget.

The TorchScript contract holds: input ``(B, 1, X, Y, Z)`` at 2 mm (each size a multiple of
``factor`` x 8), output ``(B, 21, X, Y, Z)`` logits. The displacement is in normalised
coordinates, so it does not depend on the grid size; the atlas is resampled by the same grid.

``use_se`` adds squeeze-and-excitation after every encoder/decoder unit (DeepStroke, Alig 2025).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import ChannelSELayer
from monai.networks.nets import UNet
from torch import nn

# Floor of a warped label fraction before the log: logits stay finite where the atlas has none.
EPS = 1e-4


class SEUNet(UNet):
    """``UNet`` whose down and up units are followed by a channel SE layer (reduction ratio 2)."""

    def _get_down_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        unit = super()._get_down_layer(in_channels, out_channels, strides, is_top)
        return nn.Sequential(unit, ChannelSELayer(self.dimensions, out_channels, r=2))

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        unit = super()._get_up_layer(in_channels, out_channels, strides, is_top)
        if is_top:  # the last unit emits features for the displacement head: no gating there
            return unit
        return nn.Sequential(unit, ChannelSELayer(self.dimensions, out_channels, r=2))


def _coords(b: int, nx: int, ny: int, nz: int, like: torch.Tensor) -> torch.Tensor:
    axes = [torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device) for n in (nx, ny, nz)]
    gx, gy, gz = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
    return torch.stack([gx, gy, gz])[None].expand(b, 3, nx, ny, nz)


class AtlasWarpNet(nn.Module):
    """Pool by ``factor`` -> U-Net(image, template, coordinates) -> displacement -> warped atlas.

    ``atlas_labels`` (uint8 ``(X, Y, Z)``) and ``template`` (normalised float ``(X, Y, Z)``) are
    the atlas on the aligned grid (``aspects_research.atlas_prior.aligned_prior``); they are stored as buffers,
    so the exported model needs nothing else. Without them (``None``) they are read from the
    atlas folder (``atlas_dir``, default the repository's ``atlas/``).
    """

    def __init__(self, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int = 1, norm: str = "instance", factor: int = 2, use_se: bool = False,
                 coords: bool = True, features: int = 16, disp_pool: int = 4, atlas_dir: Optional[str] = None,
                 atlas_labels: Optional[np.ndarray] = None, template: Optional[np.ndarray] = None):
        super().__init__()
        if atlas_labels is None or template is None:
            from aspects_research.atlas_prior import aligned_prior

            atlas_labels, template = aligned_prior(atlas_dir)
        if int(atlas_labels.max()) >= out_channels:
            raise ValueError(f"atlas label {int(atlas_labels.max())} outside 0..{out_channels - 1}")
        self.num_classes = int(out_channels)
        self.eps = EPS
        self.factor = int(factor)
        self.disp_pool = int(disp_pool)
        self.coords = bool(coords)
        self.register_buffer("atlas_labels", torch.from_numpy(np.ascontiguousarray(atlas_labels, dtype=np.uint8))[None, None])
        t = torch.from_numpy(np.ascontiguousarray(template, dtype=np.float32))[None, None]
        if self.factor > 1:
            t = F.avg_pool3d(t, kernel_size=self.factor, stride=self.factor)
        self.register_buffer("template_low", t)
        kind = SEUNet if use_se else UNet
        self.net = kind(spatial_dims=3, in_channels=2 + (3 if self.coords else 0), out_channels=features,
                        channels=channels, strides=strides, num_res_units=num_res_units, norm=norm)
        self.head = nn.Conv3d(features, 3, kernel_size=3, padding=1)
        nn.init.zeros_(self.head.weight)  # start at the identity: the affine-aligned atlas
        nn.init.zeros_(self.head.bias)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The input average-pooled by ``factor``: the grid the U-Net and the template live on."""
        return F.avg_pool3d(x, kernel_size=self.factor, stride=self.factor) if self.factor > 1 else x

    def displacement(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, X/f/p, Y/f/p, Z/f/p)`` displacement in normalised grid units (grid_sample order)."""
        return self.displacement_from_low(self.pool(x))

    def displacement_from_low(self, low: torch.Tensor) -> torch.Tensor:
        """:meth:`displacement` of an input already :meth:`pool`-ed."""
        b = low.shape[0]
        t = self.template_low
        if t.shape[2:] != low.shape[2:]:
            t = F.interpolate(t, size=[int(low.shape[2]), int(low.shape[3]), int(low.shape[4])], mode="trilinear",
                              align_corners=True)
        parts = [low, t.expand(b, 1, low.shape[2], low.shape[3], low.shape[4])]
        if self.coords:
            parts.append(_coords(b, int(low.shape[2]), int(low.shape[3]), int(low.shape[4]), low))
        # The head speaks in voxels of the pooled grid (well-conditioned steps for the optimiser);
        # grid_sample wants normalised units, 2 / (n - 1) per voxel, channels ordered (Z, Y, X).
        per_voxel = torch.tensor([2.0 / (low.shape[4] - 1), 2.0 / (low.shape[3] - 1), 2.0 / (low.shape[2] - 1)],
                                 dtype=low.dtype, device=low.device)
        disp = self.head(self.net(torch.cat(parts, dim=1))) * per_voxel.view(1, 3, 1, 1, 1)
        if self.disp_pool > 1:  # the field lives on a coarse grid: smooth by construction
            disp = F.avg_pool3d(disp, kernel_size=self.disp_pool, stride=self.disp_pool)
        return disp

    def _grid(self, disp_low: torch.Tensor, size: List[int]) -> torch.Tensor:
        """Sampling grid ``(B, *size, 3)``: identity plus ``disp_low`` upsampled to ``size``."""
        b = disp_low.shape[0]
        spatial = [int(size[0]), int(size[1]), int(size[2])]
        disp = F.interpolate(disp_low, size=spatial, mode="trilinear", align_corners=True)
        theta = torch.eye(3, 4, dtype=disp.dtype, device=disp.device)[None].expand(b, 3, 4)
        grid = F.affine_grid(theta, [b, 1, spatial[0], spatial[1], spatial[2]], align_corners=True)
        return grid + disp.permute(0, 2, 3, 4, 1)

    def warp(self, disp_low: torch.Tensor, size: List[int]) -> torch.Tensor:
        """Atlas label fractions ``(B, K, *size)`` warped by ``disp_low`` (upsampled to ``size``)."""
        grid = self._grid(disp_low, size)
        b = grid.shape[0]
        onehot = F.one_hot(self.atlas_labels[:, 0].long(), self.num_classes).permute(0, 4, 1, 2, 3).to(grid.dtype)
        return F.grid_sample(onehot.expand(b, self.num_classes, onehot.shape[2], onehot.shape[3], onehot.shape[4]),
                             grid, mode="bilinear", padding_mode="border", align_corners=True)

    def warp_template(self, disp_low: torch.Tensor, size: List[int]) -> torch.Tensor:
        """The low-resolution template warped by ``disp_low`` onto a grid of ``size`` (the pooled
        input's), for the image-similarity term."""
        grid = self._grid(disp_low, size)
        t = self.template_low.expand(grid.shape[0], 1, self.template_low.shape[2], self.template_low.shape[3],
                                     self.template_low.shape[4])
        return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def logits(self, disp_low: torch.Tensor, size: List[int]) -> torch.Tensor:
        """Log of the warped label fractions (floored at ``eps``): the model's output."""
        return torch.log(self.warp(disp_low, size).clamp_min(self.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.displacement(x), x.shape[2:])


class WarpTrainNet(nn.Module):
    """Training view of an :class:`AtlasWarpNet`: same logits, and keeps what the extra terms of
    :class:`scripts.losses.WarpLoss` need (never exported): the last displacement and pooled input."""

    def __init__(self, model: AtlasWarpNet):
        super().__init__()
        self.model = model
        self.last_disp: Optional[torch.Tensor] = None
        self.last_image_low: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_image_low = self.model.pool(x)
        self.last_disp = self.model.displacement_from_low(self.last_image_low)
        return self.model.logits(self.last_disp, x.shape[2:])
