"""ASPECTS regions by label-free deformable registration of the atlas (the path without a region model).

The patient is already affine-aligned to the atlas template (``aspects.preprocess``), so only a
smooth residual is fitted: a displacement field on a 16 mm control grid, upsampled trilinearly, is
optimised (Adam, :data:`STEPS` steps) to maximise the local normalised cross-correlation of the
warped template and the patient at 4 mm (box window of :data:`LNCC_WINDOW` voxels, the image term
of VoxelMorph, Balakrishnan et al. 2019) with a membrane penalty on the field. The atlas labels
follow at 2 mm (one-hot, trilinear, argmax: smooth borders, no new values) and are kept inside the
patient's brain mask. It replaces SyN (Avants et al. 2008) here: on held-out phantoms it is as
accurate and several times faster (docs/results.md, docs/performance.md).

The arterial territories (for the ``infarct_outside_mca`` flag) are taken affine-only
(:func:`territories_aligned`): they decide only whether an infarct lying outside every ASPECTS
region is in the ACA, PCA or vertebrobasilar territory, which a few mm do not change.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from aspects.model_io import normalise

POOL = 2  # 2 mm aligned grid -> 4 mm for the similarity term
CONTROL_POOL = 4  # 4 mm -> 16 mm control grid of the displacement
STEPS = 30
LEARNING_RATE = 0.01  # normalised units (2 / grid size per voxel): ~1 mm per step at most
SMOOTH_WEIGHT = 0.5
LNCC_WINDOW = 5  # voxels at 4 mm: 20 mm, the scale of sulci, ventricles and insula


def _grid(disp, size):
    import torch
    import torch.nn.functional as F

    full = F.interpolate(disp, size=size, mode="trilinear", align_corners=True)
    theta = torch.eye(3, 4, dtype=full.dtype)[None]
    base = F.affine_grid(theta, [1, 1, *size], align_corners=True)
    return base + full.permute(0, 2, 3, 4, 1)


def _lncc(a, b, window: int):
    """Mean squared local correlation coefficient of two ``(1, 1, D, H, W)`` tensors."""
    import torch.nn.functional as F

    def box(t):  # separable box mean: three 1-D passes instead of one window**3 pass
        h = window // 2
        for k, p in (((window, 1, 1), (h, 0, 0)), ((1, window, 1), (0, h, 0)), ((1, 1, window), (0, 0, h))):
            t = F.avg_pool3d(t, k, stride=1, padding=p)
        return t

    ma, mb = box(a), box(b)
    va, vb, cab = box(a * a) - ma * ma, box(b * b) - mb * mb, box(a * b) - ma * mb
    return (cab * cab / (va * vb + 1e-5)).mean()


def _membrane(disp):
    """Mean squared forward difference of the field, in control-grid voxels."""
    import torch

    d, h, w = disp.shape[2:]
    half = torch.tensor([w, h, d], dtype=disp.dtype).view(1, 3, 1, 1, 1) / 2.0  # channel 0 moves along W
    v = disp * half
    return ((v[:, :, 1:] - v[:, :, :-1]).pow(2).mean() + (v[:, :, :, 1:] - v[:, :, :, :-1]).pow(2).mean()
            + (v[:, :, :, :, 1:] - v[:, :, :, :, :-1]).pow(2).mean()) / 3.0


def fit_displacement(image: np.ndarray, template: np.ndarray, steps: int = STEPS):
    """Control-grid displacement ``(1, 3, D/8, H/8, W/8)`` (normalised grid_sample units) that
    warps ``template`` onto ``image`` (both ``(z, y, x)`` on the 2 mm aligned grid, HU)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(normalise(image))[None, None]
    t = torch.from_numpy(normalise(template))[None, None]
    x_low, t_low = F.avg_pool3d(x, POOL), F.avg_pool3d(t, POOL)
    size = list(x_low.shape[2:])
    disp = torch.zeros(1, 3, *[s // CONTROL_POOL for s in size], requires_grad=True)
    opt = torch.optim.Adam([disp], lr=LEARNING_RATE)
    for _ in range(steps):
        opt.zero_grad()
        moved = F.grid_sample(t_low, _grid(disp, size), mode="bilinear", padding_mode="zeros", align_corners=True)
        loss = -_lncc(moved, x_low, LNCC_WINDOW) + SMOOTH_WEIGHT * _membrane(disp)
        loss.backward()
        opt.step()
    return disp.detach()


def warp_labels(labels: np.ndarray, disp, n_labels: int) -> np.ndarray:
    """A ``(z, y, x)`` label map warped by ``disp`` on its own grid: one-hot, trilinear, argmax."""
    import torch
    import torch.nn.functional as F

    size = list(labels.shape)
    onehot = F.one_hot(torch.from_numpy(labels.astype(np.int64)), n_labels).permute(3, 0, 1, 2)[None].float()
    with torch.no_grad():
        moved = F.grid_sample(onehot, _grid(disp, size), mode="bilinear", padding_mode="border", align_corners=True)
    return moved.argmax(1)[0].numpy().astype(np.uint8)


def atlas_on_aligned(pre, atlas) -> Tuple[np.ndarray, np.ndarray]:
    """(ASPECTS labels, arterial territories) of the atlas on the aligned grid (affine only):
    labels by label-wise Gaussian interpolation from 1 mm, territories nearest neighbour."""
    labels = sitk.Resample(atlas.labels, pre.aligned, sitk.Transform(), sitk.sitkLabelGaussian, 0, sitk.sitkUInt8)
    terr = sitk.Resample(atlas.territories, pre.aligned, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(terr)


def _like(arr: np.ndarray, pre) -> sitk.Image:
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(pre.aligned)
    return out


def atlas_regions(pre, atlas) -> sitk.Image:
    """uint8 ASPECTS labels (``aspects.labels``) on the aligned grid of ``pre``."""
    import torch

    labels, _ = atlas_on_aligned(pre, atlas)
    with torch.enable_grad():
        disp = fit_displacement(sitk.GetArrayFromImage(pre.aligned), sitk.GetArrayFromImage(pre.template))
    arr = warp_labels(labels, disp, 21)
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    return _like(arr, pre)


def territories_aligned(pre, atlas) -> sitk.Image:
    """uint8 arterial territory labels (``aspects.atlas.TERRITORY_GROUPS``) on the aligned grid,
    inside the brain mask."""
    _, terr = atlas_on_aligned(pre, atlas)
    terr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    return _like(terr, pre)
