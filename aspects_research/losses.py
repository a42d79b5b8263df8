"""Training losses: the Territory-Aware Gated Loss (TAGL, Syed et al. 2026) and its wrapper around a base loss.

TAGL couples the basal-ganglia (BG) and supraganglionic (SG) ASPECTS levels: infarct evidence at a
BG location should be matched at the SG location above it (M1/M4, M2/M5, M3/M6 are stacked). Seed
000 works on paired 2D BG/SG slices; here the volumes are template-aligned 3D, so each level is a
slab of axial planes and its "slice" is the per-column maximum of the infarct probability over the
slab (max keeps a thin lesion visible; a mean would dilute it with the slab's healthy planes).

With ``p_bg``, ``p_sg`` those ``(X, Y)`` maps (one per batch item), threshold ``tau`` and weight
``lam`` (Syed et al. 2026, eqs. 1-3):

* gate          ``g = 1[p_bg > tau]`` (binary, no gradient)
* confidences   ``c_bg = mean(p_bg)``, ``c_sg = mean(p_sg)`` (slice-level)
* adaptive weight ``w = exp(c_bg) / (exp(c_bg) + exp(c_sg))`` (softmax; larger when BG is surer)
* penalty       ``l = w * g * |p_bg - p_sg|``, averaged over the ``X * Y`` locations and the batch
* total         ``L = L_seg + lam * L_TAGL``; ``lam = 0`` (or ``enabled=False``) gives ``L_seg``.

The weight is detached: it modulates how strongly the disagreement is penalised, it is not itself
a quantity to optimise (pushing it would reward inflating BG confidence).

Tensors are in the model layout ``(B, K, X, Y, Z)`` (``aspects.model_io``): axis Z (last) is the
superior direction of the aligned grid, and slabs are ``(z_start, z_stop)`` index ranges on it.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import nn

Slab = Tuple[int, int]


def _slab_max(prob: torch.Tensor, slab: Slab) -> torch.Tensor:
    """``(B, X, Y, Z)`` -> ``(B, X, Y)``: maximum over the planes ``z_start <= z < z_stop``."""
    z0, z1 = int(slab[0]), int(slab[1])
    if not 0 <= z0 < z1 <= prob.shape[-1]:
        raise ValueError(f"slab {slab} outside the volume's {prob.shape[-1]} axial planes")
    return prob[..., z0:z1].amax(dim=-1)


def tagl_penalty(p_bg: torch.Tensor, p_sg: torch.Tensor, tau: float) -> torch.Tensor:
    """The TAGL term for paired level maps ``p_bg``, ``p_sg`` of shape ``(B, *spatial)`` in [0, 1]."""
    if p_bg.shape != p_sg.shape:
        raise ValueError(f"BG and SG maps differ in shape: {tuple(p_bg.shape)} vs {tuple(p_sg.shape)}")
    flat_bg = p_bg.reshape(p_bg.shape[0], -1)
    flat_sg = p_sg.reshape(p_sg.shape[0], -1)
    gate = (flat_bg > tau).to(flat_bg.dtype)
    conf = torch.stack([flat_bg.mean(dim=1), flat_sg.mean(dim=1)], dim=1)
    weight = torch.softmax(conf, dim=1)[:, 0].detach()
    per_pixel = weight[:, None] * gate * (flat_bg - flat_sg).abs()
    return per_pixel.mean()


def tagl_volume(prob: torch.Tensor, bg_slab: Slab, sg_slab: Slab, tau: float) -> torch.Tensor:
    """TAGL on a ``(B, X, Y, Z)`` infarct-probability volume with the two levels given as slabs."""
    return tagl_penalty(_slab_max(prob, bg_slab), _slab_max(prob, sg_slab), tau)


class TerritoryAwareGatedLoss(nn.Module):
    """``base(logits, target) + lam * TAGL(softmax(logits)[:, foreground])``, switchable.

    ``base`` is any MONAI/torch loss taking ``(logits, target)`` (e.g. ``DiceCELoss``). With
    ``enabled=False``, ``lam == 0`` or no slabs the module returns exactly ``base(logits, target)``,
    so a config flag turns the term off without changing anything else.
    """

    def __init__(
        self,
        base: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        bg_slab: Optional[Sequence[int]] = None,
        sg_slab: Optional[Sequence[int]] = None,
        lam: float = 0.1,
        tau: float = 0.1,
        foreground: int = 1,
        enabled: bool = True,
    ):
        super().__init__()
        if lam < 0:
            raise ValueError(f"TAGL weight must be >= 0, not {lam}")
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"TAGL gate threshold must be in [0, 1), not {tau}")
        self.base = base
        self.bg_slab = (int(bg_slab[0]), int(bg_slab[1])) if bg_slab is not None else None
        self.sg_slab = (int(sg_slab[0]), int(sg_slab[1])) if sg_slab is not None else None
        self.lam = float(lam)
        self.tau = float(tau)
        self.foreground = int(foreground)
        self.enabled = bool(enabled) and self.lam > 0 and self.bg_slab is not None and self.sg_slab is not None
        self.last_tagl: float = 0.0  # the latest TAGL value, for logging

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(logits, target)
        if not self.enabled:
            return loss
        prob = torch.softmax(logits, dim=1)[:, self.foreground]
        term = tagl_volume(prob, self.bg_slab, self.sg_slab, self.tau)  # type: ignore[arg-type]
        self.last_tagl = float(term.detach())
        return loss + self.lam * term
