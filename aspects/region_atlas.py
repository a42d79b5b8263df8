"""ASPECTS regions by label-free deformable registration of the atlas (the path without a region model).

The patient is already affine-aligned to the atlas template (``aspects.preprocess``), so only a
smooth residual is fitted: a displacement field on a 16 mm control grid, upsampled trilinearly, is
optimised (Adam, :data:`STEPS` steps) to maximise the local normalised cross-correlation of the
warped template and the patient at 4 mm (box window of :data:`LNCC_WINDOW` voxels, the image term
of VoxelMorph, Balakrishnan et al. 2019) with a membrane penalty on the field. The 1 mm atlas
labels are sampled through the field onto the 2 mm aligned grid (one-hot, trilinear, argmax:
smooth borders, no new values) and kept inside the patient's brain mask. It replaced SyN (Avants
et al. 2008) here: on 12 held-out atlas-v2 phantoms 2.2x faster (3.5 s vs 7.6 s) and 0.005 lower
in mean region Dice (0.820 vs 0.825; docs/results.md, docs/performance.md). Its parameters were
chosen on 5 of those 12 phantoms, so that comparison slightly favours it.

The arterial territories (for the ``infarct_outside_mca`` flag) are taken affine-only
(:func:`territories_aligned`): they decide only whether an infarct lying outside every ASPECTS
region is in the ACA, PCA or vertebrobasilar territory, which a few mm do not change.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk

from aspects.inference import set_cpu_threads
from aspects.model_io import normalise

POOL = 2  # 2 mm aligned grid -> 4 mm for the similarity term
CONTROL_POOL = 4  # 4 mm -> 16 mm control grid of the displacement
STEPS = 30
LEARNING_RATE = 0.01  # normalised units (2 / grid size per voxel): ~1 mm per step at most
# Chosen on 5 held-out-style phantoms (seeds 1000-1002, 1005, 1008; atlas v2; aligned-space region
# Dice): window 5 / 9 / 13 voxels with smoothness 0.5 gave 0.795 / 0.801 / 0.797; window 9 with
# smoothness 0.25 / 1 / 2 gave 0.798 / 0.805 / 0.806 (SyN 0.807, affine 0.787); then on the source
# grid of 3 of them, with the 1 mm labels sampled directly, window 7 / 9 / 11 (smoothness 2, 3 for
# 11) 0.834 / 0.832 / 0.828; 60 steps, learning rate 0.02 or an 8 mm control grid no better.
# The v2 template is a smooth population average: a wide window and a stiff field suit it.
SMOOTH_WEIGHT = 2.0
FIT_THREADS = 1
LNCC_WINDOW = 7  # voxels at 4 mm: 28 mm, ventricles, insula and the brain outline together


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
    # The similarity is computed only inside the bounding box of both brains (+ the window):
    # the rest of the grid is zero in both images and costs half the time for nothing.
    nz = np.argwhere((x_low[0, 0] > 0).numpy() | (t_low[0, 0] > 0).numpy())
    pad = LNCC_WINDOW
    box = tuple(slice(max(0, int(a) - pad), min(n, int(b) + pad + 1)) for a, b, n in zip(nz.min(0), nz.max(0), size))
    x_box = x_low[(slice(None), slice(None)) + box]
    disp = torch.zeros(1, 3, *[s // CONTROL_POOL for s in size], requires_grad=True)
    opt = Adam(disp, lr=LEARNING_RATE)
    # One intra-op thread: these small tensors gain nothing from two, and on a busy 2-core host
    # (the infarct model runs beside it) two threads took 4x longer (13.6 s vs 3.4 s, 2026-12-02).
    # Process-wide and not restored: the infarct model may be running in another thread
    # (aspects.inference.set_cpu_threads).
    set_cpu_threads(FIT_THREADS)
    return _optimise(disp, opt, t_low, x_box, size, box, steps).detach()


class Adam:
    """Adam (Kingma & Ba 2015) for one tensor, with the arithmetic of ``torch.optim.Adam``'s
    default CPU path (single-tensor, no weight decay, no AMSGrad): the same updates bit for bit
    (tests/test_region_warp.py), without ``torch.optim``, whose first optimiser imports
    ``torch._dynamo`` (about a second of start-up per process, docs/performance.md)."""

    def __init__(self, param, lr: float, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        import torch

        self.param, self.lr, self.beta1, self.beta2, self.eps = param, lr, betas[0], betas[1], eps
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0.0  # torch keeps a float32 step tensor and reads it back as a Python float

    def zero_grad(self) -> None:
        self.param.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            grad = self.param.grad
            self.steps += 1.0
            self.exp_avg.lerp_(grad, 1 - self.beta1)
            self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1**self.steps)
            denom = (self.exp_avg_sq.sqrt() / (1 - self.beta2**self.steps) ** 0.5).add_(self.eps)
            self.param.addcdiv_(self.exp_avg, denom, value=-step_size)


def _optimise(disp, opt, t_low, x_box, size, box, steps: int):
    import torch.nn.functional as F

    for _ in range(steps):
        opt.zero_grad()
        grid = _grid(disp, size)[(slice(None),) + box]
        moved = F.grid_sample(t_low, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        loss = -_lncc(moved, x_box, LNCC_WINDOW) + SMOOTH_WEIGHT * _membrane(disp)
        loss.backward()
        opt.step()
    return disp


def warp_atlas_labels(labels_1mm: sitk.Image, ref: sitk.Image, disp, n_labels: int) -> np.ndarray:
    """The 1 mm atlas label map sampled on ``ref`` (the aligned grid) through ``disp``: one-hot,
    trilinear, argmax, as ANTs' genericLabel does. Sampling the 1 mm labels directly (cropped to
    their extent) keeps region borders that a 2 mm copy of the atlas would blur twice."""
    import torch
    import torch.nn.functional as F

    lab = sitk.GetArrayViewFromImage(labels_1mm)
    nz = np.argwhere(lab > 0)
    lo, hi = np.maximum(nz.min(0) - 2, 0), np.minimum(nz.max(0) + 3, lab.shape)
    crop = np.ascontiguousarray(lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    size = list(sitk.GetArrayViewFromImage(ref).shape)  # (z, y, x)
    grid = _grid(disp, size)[0]  # normalised (x, y, z) of the aligned grid, warped
    # aligned normalised -> physical (identity directions) -> normalised of the 1 mm crop
    sp_ref, o_ref = np.array(ref.GetSpacing()), np.array(ref.GetOrigin())
    sp_lab = np.array(labels_1mm.GetSpacing())
    o_crop = np.array(labels_1mm.TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]]))
    n_ref, n_crop = np.array(size[::-1], float), np.array(crop.shape[::-1], float)
    scale = (n_ref - 1) * sp_ref / ((n_crop - 1) * sp_lab)
    shift = (o_ref + (n_ref - 1) * sp_ref / 2 - o_crop) / ((n_crop - 1) * sp_lab / 2) - 1
    g = grid * torch.tensor(scale, dtype=grid.dtype) + torch.tensor(shift, dtype=grid.dtype)
    # One-hot written straight into float32 channels: F.one_hot would first build an int64
    # (z, y, x, labels) copy, 560 MB for the 1 mm atlas crop, beside the float one (same values).
    onehot = torch.zeros((1, n_labels) + crop.shape, dtype=torch.float32)
    onehot.scatter_(1, torch.from_numpy(crop.astype(np.int64))[None, None], 1.0)
    with torch.no_grad():
        moved = F.grid_sample(onehot, g[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    out = moved.argmax(1)[0].numpy().astype(np.uint8)
    out[moved.sum(1)[0].numpy() < 0.5] = 0  # outside the crop: background
    return out


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

    with torch.enable_grad():
        disp = fit_displacement(sitk.GetArrayFromImage(pre.aligned), sitk.GetArrayFromImage(pre.template))
    arr = warp_atlas_labels(atlas.labels, pre.aligned, disp, 21)
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    return _like(arr, pre)


def territories_aligned(pre, atlas) -> sitk.Image:
    """uint8 arterial territory labels (``aspects.atlas.TERRITORY_GROUPS``) on the aligned grid,
    inside the brain mask (nearest neighbour, as in :func:`atlas_on_aligned`)."""
    terr = sitk.GetArrayFromImage(sitk.Resample(atlas.territories, pre.aligned, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                0, sitk.sitkUInt8))
    terr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    return _like(terr, pre)
