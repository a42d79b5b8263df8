"""MONAI residual U-Net with squeeze-and-excitation after every encoder/decoder unit (DeepStroke, seed 001).

Selected by the config flag ``use_se``; with it off the bundle uses ``monai.networks.nets.UNet``
unchanged. Both are TorchScript-scriptable, so ``ckpt_export`` works for either.
"""

from __future__ import annotations

from torch import nn
from monai.networks.blocks import ChannelSELayer
from monai.networks.nets import UNet


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


def build_network(use_se: bool, **kwargs) -> nn.Module:
    """The bundle's network: ``SEUNet`` when ``use_se`` else MONAI's ``UNet`` (same arguments)."""
    return SEUNet(**kwargs) if use_se else UNet(**kwargs)
