"""Anti-aliased downsampling onto a coarser grid of the same orientation, one axis at a time.

``sitk.DiscreteGaussian`` followed by a linear ``sitk.Resample`` onto a grid with the image's own
direction is separable: along each axis a 1-D convolution (ITK's discrete Gaussian kernel, edge
values continued: ZeroFluxNeumann) then 1-D linear interpolation at the new sample positions.
Doing the interpolation right after each axis's convolution means only the first axis runs at
full resolution (a 512 x 512 x 300 thin study: the whole Gaussian at full size took ~6-12 s, this
under 2 s), and working through the slices in chunks keeps the memory to a few slices.

The kernels are ITK's own (read from its response to an impulse), the edges and the samples
outside the image follow ``sitk.Resample`` (linear interpolation clamps to the edge; a point
more than half a voxel outside gets the default value), and the arithmetic is in float64 as in
ITK, so the result equals the two-filter path to float32 rounding (tests/test_fast_paths.py).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

CHUNK_SLICES = 16  # slices convolved and interpolated in-plane at a time (memory, not results)


def gaussian_kernels(spacing: Union[Sequence[float], np.ndarray], variance_mm2: Union[Sequence[float], np.ndarray],
                     maximum_error: float = 0.01, maximum_kernel_width: int = 32) -> List[np.ndarray]:
    """The 1-D kernels (x, y, z) that ``sitk.DiscreteGaussian(img, variance_mm2, maximum_kernel_width,
    maximum_error, True)`` applies to an image of this ``spacing``, read from its impulse response."""
    n = maximum_kernel_width + 1 + 2 * 8  # wider than the widest kernel: the edges never reach the centre
    impulse = np.zeros((n, n, n), np.float64)
    c = n // 2
    impulse[c, c, c] = 1.0
    img = sitk.GetImageFromArray(impulse)
    img.SetSpacing([float(v) for v in spacing])
    h = sitk.GetArrayFromImage(sitk.DiscreteGaussian(img, [float(v) for v in variance_mm2], maximum_kernel_width,
                                                     maximum_error, True))
    lines = (h[c, c, :], h[c, :, c], h[:, c, c])  # along x, y, z
    out = []
    for line in lines:
        nz = np.flatnonzero(np.abs(line) > 0)
        r = int(max(c - nz.min(), nz.max() - c)) if nz.size else 0
        k = line[c - r:c + r + 1]
        out.append(k / k.sum())  # the other two kernels' centre values divide out
    return out


def linear_samples(n: int, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight, inside) of 1-D linear interpolation at continuous
    ``positions`` of an axis of ``n`` samples, as ITK's linear interpolator and ``Resample`` do:
    neighbours clamped to the edge, inside when -0.5 <= position < n - 0.5."""
    base = np.floor(positions)
    lo = np.clip(base, 0, n - 1).astype(np.intp)
    hi = np.clip(base + 1, 0, n - 1).astype(np.intp)
    w = np.clip(positions - lo, 0.0, 1.0)  # below 0 (clamped base): the edge value
    inside = (positions >= -0.5) & (positions < n - 0.5)
    return lo, hi, w, inside


def _smooth_sample(arr: np.ndarray, axis: int, kernel: np.ndarray, samples) -> np.ndarray:
    lo, hi, w, _ = samples
    if kernel.size > 1:
        arr = ndi.correlate1d(arr, kernel, axis=axis, mode="nearest")
    shape = [1] * arr.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(arr, lo, axis=axis) * (1.0 - w) + np.take(arr, hi, axis=axis) * w


def smooth_and_resample(img: sitk.Image, variance_mm2: Union[Sequence[float], np.ndarray], ref: sitk.Image, clamp: Tuple[float, float],
                        default: float) -> sitk.Image:
    """``sitk.Resample(sitk.DiscreteGaussian(sitk.Clamp(img, float32, *clamp), variance_mm2, 32,
    0.01, True), ref, identity, linear, default, float32)`` for a ``ref`` grid with ``img``'s
    direction (any origin, spacing, size), computed axis by axis (module docstring); no smoothing
    when every variance is below 0.01 mm^2, as ``aspects.preprocess._antialias`` decides."""
    if not np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-9):
        raise ValueError("the target grid must have the image's direction")
    sp = np.asarray(img.GetSpacing(), float)
    var = np.asarray(variance_mm2, float)
    kernels = gaussian_kernels(sp, var) if np.any(var > 0.01) else [np.ones(1)] * 3
    # continuous index of every target sample along each image axis (x, y, z)
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)
    start = d.T @ (np.asarray(ref.GetOrigin(), float) - np.asarray(img.GetOrigin(), float)) / sp
    step = np.asarray(ref.GetSpacing(), float) / sp
    size_in, size_out = img.GetSize(), ref.GetSize()
    samples = [linear_samples(size_in[a], start[a] + step[a] * np.arange(size_out[a])) for a in range(3)]
    src = sitk.GetArrayViewFromImage(img)  # (z, y, x)
    planes = np.empty((size_in[2], size_out[1], size_out[0]), np.float64)
    for z0 in range(0, size_in[2], CHUNK_SLICES):
        chunk = np.clip(src[z0:z0 + CHUNK_SLICES].astype(np.float32), *clamp).astype(np.float64)
        chunk = _smooth_sample(chunk, 2, kernels[0], samples[0])
        planes[z0:z0 + CHUNK_SLICES] = _smooth_sample(chunk, 1, kernels[1], samples[1])
    out = _smooth_sample(planes, 0, kernels[2], samples[2]).astype(np.float32)
    inside = samples[2][3][:, None, None] & samples[1][3][None, :, None] & samples[0][3][None, None, :]
    out[~inside] = default
    res = sitk.GetImageFromArray(out)
    res.CopyInformation(ref)
    return res
