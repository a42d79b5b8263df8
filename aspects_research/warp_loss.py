"""Loss of the aspects_regions bundle: DiceCE on the warped atlas plus displacement smoothness."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, LocalNormalizedCrossCorrelationLoss
from torch import nn


def smoothness(disp: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of a ``(B, 3, X, Y, Z)`` field along x, y and z, with the
    field in voxels of its own grid (normalised units are 2 / size; channels in grid_sample
    order: 0 moves along Z, 1 along Y, 2 along X)."""
    half = torch.tensor([disp.shape[4], disp.shape[3], disp.shape[2]], dtype=disp.dtype, device=disp.device) / 2.0
    disp = disp * half.view(1, 3, 1, 1, 1)
    dx = disp[:, :, 1:] - disp[:, :, :-1]
    dy = disp[:, :, :, 1:] - disp[:, :, :, :-1]
    dz = disp[:, :, :, :, 1:] - disp[:, :, :, :, :-1]
    return (dx.pow(2).mean() + dy.pow(2).mean() + dz.pow(2).mean()) / 3.0


class WarpLoss(nn.Module):
    """``DiceCE(logits, label) + sim_weight * LNCC(template warped, image) + smooth_weight * smoothness``.

    The extra terms use what the training network (``aspects_research.atlas_warp_net.WarpTrainNet``) kept from the
    forward pass that made these logits. Labels only say where region borders are; the image term
    (VoxelMorph-style local normalised cross-correlation at 4 mm) gives a dense signal everywhere,
    the one SyN uses. The smoothness weight keeps the field plausible (thick-slice truth is
    staircased in z; a field that followed it would not be).
    """

    def __init__(self, train_net: nn.Module, smooth_weight: float = 1.0, sim_weight: float = 1.0, sim_kernel: int = 5):
        super().__init__()
        self.train_net = train_net
        self.smooth_weight = float(smooth_weight)
        self.sim_weight = float(sim_weight)
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        self.lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=sim_kernel)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = self.dice_ce(logits, label)
        disp = getattr(self.train_net, "last_disp", None)
        if disp is not None and self.smooth_weight > 0:
            loss = loss + self.smooth_weight * smoothness(disp)
        if disp is not None and self.sim_weight > 0:  # the template is warped only when this term is on
            image = self.train_net.last_image_low
            moved = self.train_net.model.warp_template(disp, list(image.shape[2:]))
            loss = loss + self.sim_weight * (1.0 + self.lncc(moved, image))
        return loss
