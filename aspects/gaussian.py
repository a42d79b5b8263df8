"""ITK's discrete Gaussian (``sitk.DiscreteGaussian``) computed with NumPy on two threads: the
same float32 values, 3-5x faster on a thin study.

SimpleITK 2.5 (ITK 5.4) smooths a float32 image with one 1-D kernel per axis (Lindeberg 1990's
discrete Gaussian, sampled Bessel functions), in the order z, y, x; each pass sums
``kernel[j] * voxel`` in double, in the kernel's order, with the edge voxels repeated (zero-flux
Neumann), and rounds the sum to float32 before the next pass. Doing the same operations in the
same order gives the same floats, and nothing less would do: ANTs turns a one-ulp change of its
input into a different registration (docs/performance.md, "Tried and not taken"). The kernels
are ITK's own (its response to an impulse along one axis), and :func:`matches_itk` checks the
whole chain against ITK on a random volume once per process; where it differs (another ITK),
callers keep ITK's filter. The volume is cut into slabs of :data:`SLAB` slices, each read with
the z kernel's neighbours: a voxel's value does not depend on the cut, and NumPy's loops release
the GIL, so the slabs run on up to :data:`THREADS` threads.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

MAX_KERNEL_WIDTH = 32
MAX_ERROR = 0.01
SLAB = 8  # slices per job, each smoothed on its own (cache-sized buffers); values do not depend on it
THREADS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def itk_gaussian(img: sitk.Image, variance: Union[Sequence[float], np.ndarray]) -> sitk.Image:
    """ITK's filter: per-axis ``variance`` in mm^2 (``(x, y, z)``), image spacing used."""
    return sitk.DiscreteGaussian(img, [float(v) for v in variance], MAX_KERNEL_WIDTH, MAX_ERROR, True)


@lru_cache(maxsize=64)
def itk_kernel(spacing_mm: float, variance_mm2: float) -> np.ndarray:
    """ITK's 1-D kernel for one axis of this spacing and variance (its weights in the order its
    sums use them), read from ITK's response to a unit impulse along that axis only."""
    n = 2 * MAX_KERNEL_WIDTH + 1
    probe = sitk.Image([n, 1, 1], sitk.sitkFloat64)
    probe.SetSpacing([float(spacing_mm), 1.0, 1.0])
    probe[n // 2, 0, 0] = 1.0
    h = sitk.GetArrayFromImage(itk_gaussian(probe, [float(variance_mm2), 0.0, 0.0])).ravel()
    r = int(np.abs(np.flatnonzero(h) - n // 2).max())
    # out[i] = sum_j w[j] * in[i - r + j]; the impulse response is w reversed (symmetric anyway)
    return h[n // 2 - r:n // 2 + r + 1][::-1].copy()


def _identity(kernel: np.ndarray) -> bool:
    """A kernel of zero variance (``[0, 1, 0]``): the pass would return its input."""
    return bool(np.count_nonzero(kernel) == 1 and kernel[len(kernel) // 2] == 1.0)


def _pass(src: np.ndarray, kernel: np.ndarray, axis: int, out: np.ndarray, tmp: np.ndarray, acc: np.ndarray) -> None:
    """One ITK pass along numpy ``axis`` of ``src`` (already padded by the kernel's radius on that
    axis): ``out = float32(0.0 + w0 * x0 + w1 * x1 + ...)``, products and sums in double."""
    n = out.shape[axis]
    acc[...] = 0.0
    for j, w in enumerate(kernel):
        sl = [slice(None)] * src.ndim
        sl[axis] = slice(j, j + n)
        np.multiply(src[tuple(sl)], w, out=tmp, dtype=np.float64)
        np.add(acc, tmp, out=acc)
    out[...] = acc


def discrete_gaussian(arr: np.ndarray, spacing: Sequence[float], variance: Union[Sequence[float], np.ndarray],
                      clamp: Optional[Tuple[float, float]] = None, threads: int = THREADS,
                      out: Optional[np.ndarray] = None) -> np.ndarray:
    """``itk_gaussian`` of ``arr`` (float32, ``(z, y, x)``; ``spacing`` and ``variance`` in ITK's
    ``(x, y, z)`` order), after ``np.clip(arr, *clamp)`` when given, into ``out`` (float32, the
    shape of ``arr``, not ``arr`` itself; default a new array), which is returned. ``arr`` is only read."""
    if arr.dtype != np.float32 or arr.ndim != 3:
        raise ValueError("discrete_gaussian takes a 3-D float32 array")
    if out is None:
        out = np.empty(arr.shape, np.float32)
    elif out.shape != arr.shape or out.dtype != np.float32 or np.shares_memory(out, arr):
        raise ValueError("out must be a separate float32 array of the input's shape")
    kz, ky, kx = (itk_kernel(float(spacing[a]), float(variance[a])) for a in (2, 1, 0))
    smooth_z, smooth_y, smooth_x = (not _identity(k) for k in (kz, ky, kx))
    rz, ry, rx = len(kz) // 2, len(ky) // 2, len(kx) // 2
    nz, ny, nx = arr.shape

    def one_slab(z0: int) -> None:
        z1 = min(z0 + SLAB, nz)
        m = z1 - z0
        lo, hi = max(z0 - rz, 0), min(z1 + rz, nz)
        # the slab with rz neighbours each side; the volume's own edge slices repeated beyond it
        src = np.empty((m + 2 * rz, ny, nx), np.float32)
        a = lo - (z0 - rz)
        src[a:a + hi - lo] = arr[lo:hi]
        src[:a] = arr[lo]
        src[a + hi - lo:] = arr[hi - 1]
        if clamp is not None:
            np.clip(src, clamp[0], clamp[1], out=src)
        tmp, acc = np.empty((1, ny, nx)), np.empty((1, ny, nx))  # one slice: stays in cache
        for i in range(m):
            cur = out[z0 + i:z0 + i + 1]
            if smooth_z:
                _pass(src[i:i + 2 * rz + 1], kz, 0, cur, tmp, acc)
            else:
                cur[...] = src[rz + i:rz + i + 1]
            if smooth_y:
                _pass(np.pad(cur, ((0, 0), (ry, ry), (0, 0)), mode="edge"), ky, 1, cur, tmp, acc)
            if smooth_x:
                _pass(np.pad(cur, ((0, 0), (0, 0), (rx, rx)), mode="edge"), kx, 2, cur, tmp, acc)

    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_slab, range(0, nz, SLAB)))
    else:
        for z0 in range(0, nz, SLAB):
            one_slab(z0)
    return out


@lru_cache(maxsize=1)
def matches_itk() -> bool:
    """True when :func:`discrete_gaussian` equals ITK's filter, bit for bit, on a random volume
    with thin-slice and thick-slice spacings (a few milliseconds, once per process)."""
    rng = np.random.default_rng(20261203)
    arr = rng.normal(30.0, 400.0, (11, 13, 12)).astype(np.float32)
    for spacing in ((0.45, 0.5, 0.625), (0.5, 0.5, 5.0)):
        var = [max(4.0 - s * s, 0.0) / (8 * np.log(2)) for s in spacing]
        img = sitk.GetImageFromArray(np.clip(arr, -1024.0, 3071.0))
        img.SetSpacing(spacing)
        ref = sitk.GetArrayFromImage(itk_gaussian(img, var))
        if not np.array_equal(discrete_gaussian(arr, spacing, var, clamp=(-1024.0, 3071.0), threads=1), ref):
            log.warning("the NumPy Gaussian differs from this ITK's (SimpleITK %s): ITK's filter is used",
                        sitk.Version.VersionString())
            return False
    return True
