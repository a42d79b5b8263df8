"""The selected series as a SimpleITK HU volume on a regular orthogonal grid, and the grids that
lead back to the original slices.

A regular, untilted series is used as it is (its own grid). A gantry-tilted or irregularly spaced
series is resampled the way dcm2niix corrects tilt (Li et al. 2016, dcm2niix): every output plane
is parallel to the slices, at a fixed step along their normal; its pixels are taken from the two
nearest slices, each shifted in-plane to where that slice really lies (removing the shear), and
blended linearly along the normal (filling the unequal steps). Results go back onto each original
slice's own plane (:func:`slice_grid`), so nothing downstream assumes a regular stack.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from scipy import ndimage as ndi

from aspects.dicom_geometry import SliceGeometry

AIR_HU = -1024.0  # value outside the scanned field of a resampled grid


@dataclass(frozen=True)
class SeriesVolume:
    """HU image on a regular orthogonal grid plus the geometry of the original slices."""

    image: sitk.Image  # float32 HU, LPS
    geometry: SliceGeometry
    resampled: bool  # False: ``image`` is the series' own grid, index-aligned with the slices


def _direction(geom: SliceGeometry) -> tuple:
    return tuple(float(v) for v in np.column_stack([geom.row_dir, geom.col_dir, geom.normal]).ravel())


def series_grid(sorted_datasets: Sequence[Dataset]) -> sitk.Image:
    """An empty image index-aligned with the sorted slices (origin of slice 0, median step).

    Exact for a regular untilted series; for other series only the index layout is right (used
    for the NIfTI copies of the masks, which are index-aligned with the DICOM instances).
    """
    geom = SliceGeometry.from_datasets(sorted_datasets)
    return stack_grid(geom)


def stack_grid(geom: SliceGeometry) -> sitk.Image:
    """The index-aligned grid of :func:`series_grid` for a geometry."""
    steps = geom.steps
    dz = float(np.median(steps)) if steps.size else (geom.thickness_mm[0] if np.isfinite(geom.thickness_mm[0]) else 1.0)
    rows, cols = geom.shape
    img = sitk.Image(cols, rows, geom.n_slices, sitk.sitkUInt8)
    img.SetOrigin(tuple(float(v) for v in geom.origins[0]))
    img.SetSpacing((geom.pixel_mm[1], geom.pixel_mm[0], dz))
    img.SetDirection(_direction(geom))
    return img


def slice_grid(geom: SliceGeometry, k: int) -> sitk.Image:
    """A one-slice image on slice ``k``'s own plane (size columns x rows x 1)."""
    rows, cols = geom.shape
    img = sitk.Image(cols, rows, 1, sitk.sitkUInt8)
    img.SetOrigin(tuple(float(v) for v in geom.origins[k]))
    img.SetSpacing((geom.pixel_mm[1], geom.pixel_mm[0], 1.0))
    img.SetDirection(_direction(geom))
    return img


def float_image(shape_zyx: Sequence[int]) -> Tuple[sitk.Image, np.ndarray]:
    """A new float32 SimpleITK image of ``shape_zyx`` and a writable NumPy view of its pixels,
    to fill in place: ``sitk.GetImageFromArray`` would allocate and copy the volume once more
    (320 MB for a thin study; the fresh pages cost 0.1-1.5 s on a 2-core VM, docs/performance.md).
    SimpleITK's own view is read-only, so the view is made over the same buffer; the image is new
    and unshared (its buffer made unique), and the view holds a reference to it, so the pixels
    outlive neither."""
    img = sitk.Image([int(v) for v in shape_zyx[::-1]], sitk.sitkFloat32)
    pixels = sitk.GetArrayViewFromImage(img)  # makes the buffer unique
    buf = (ctypes.c_char * pixels.nbytes).from_address(pixels.__array_interface__["data"][0])
    buf._image = img  # type: ignore[attr-defined]  # keeps the image alive while a view exists
    return img, np.frombuffer(memoryview(buf).cast("B"), np.float32).reshape(pixels.shape)


def on_grid(array_zyx: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x) array in the geometry of ``grid``."""
    img = sitk.GetImageFromArray(array_zyx)
    img.CopyInformation(grid)
    return img


def processing_step(geom: SliceGeometry) -> float:
    """Step of the regular grid: the lower quartile of the slice steps, so that the finer part of
    a two-part series keeps its resolution and a lone short step (the overlap between the parts)
    does not multiply the number of planes."""
    steps = geom.steps
    return float(np.percentile(steps, 25)) if steps.size else 1.0


def _shifted(plane: np.ndarray, offset_rc: np.ndarray, shape: tuple) -> np.ndarray:
    """``plane`` sampled at (row + offset_r, column + offset_c) on an output of ``shape``;
    NaN outside the slice (bilinear)."""
    return ndi.affine_transform(plane, np.eye(2), offset=offset_rc, output_shape=shape, order=1,
                                mode="constant", cval=np.nan, prefilter=False)


def regular_volume(stack: np.ndarray, geom: SliceGeometry, fill: float = AIR_HU) -> sitk.Image:
    """Resample a (N, rows, cols) HU stack onto a regular orthogonal grid (see the module docstring).

    The grid has the slices' in-plane axes and pixel size, the normal as third axis with
    :func:`processing_step`, spans the first to the last slice and, in-plane, the union of all
    slices' fields of view; points no slice covers get ``fill``.
    """
    dz = processing_step(geom)
    pos = geom.positions
    n_planes = int(np.floor((pos[-1] - pos[0]) / dz + 1e-3)) + 1
    rows, cols = geom.shape
    dr, dc = geom.pixel_mm
    shift_px = geom.shifts_mm / np.array([dc, dr])  # (column, row) offsets of each slice origin
    lo = np.floor(shift_px.min(axis=0) + 1e-6)
    hi = np.ceil(shift_px.max(axis=0) - 1e-6)
    out_cols, out_rows = cols + int(hi[0] - lo[0]), rows + int(hi[1] - lo[1])
    origin0 = geom.origins[0] + lo[0] * dc * geom.row_dir + lo[1] * dr * geom.col_dir
    out = np.empty((n_planes, out_rows, out_cols), np.float32)
    for z in range(n_planes):
        s = pos[0] + z * dz
        k = int(np.clip(np.searchsorted(pos, s, side="right") - 1, 0, geom.n_slices - 2))
        t = float(np.clip((s - pos[k]) / (pos[k + 1] - pos[k]), 0.0, 1.0))
        plane_origin = origin0 + (s - pos[0]) * geom.normal
        acc = np.zeros((out_rows, out_cols), np.float64)
        for j, w in ((k, 1.0 - t), (k + 1, t)):
            if w <= 1e-6:
                continue
            d = plane_origin - geom.origins[j]
            offset = np.array([d @ geom.col_dir / dr, d @ geom.row_dir / dc])
            acc += w * _shifted(stack[j].astype(np.float32), offset, (out_rows, out_cols))
        out[z] = np.where(np.isnan(acc), fill, acc)
    img = sitk.GetImageFromArray(out)
    img.SetOrigin(tuple(float(v) for v in origin0))
    img.SetSpacing((dc, dr, dz))
    img.SetDirection(_direction(geom))
    return img


def series_volume(stack: np.ndarray, sorted_datasets: Sequence[Dataset],
                  stack_image: Optional[sitk.Image] = None) -> SeriesVolume:
    """HU volume (float32) from a rescaled pixel stack whose slices follow ``sorted_datasets``;
    ``stack_image``: the image whose pixels ``stack`` is (:func:`float_image`), used as the volume
    of a regular series without a copy."""
    geom = SliceGeometry.from_datasets(sorted_datasets)
    expected = (geom.n_slices,) + geom.shape
    if tuple(stack.shape) != expected:
        raise ValueError(f"pixel stack {stack.shape} does not match the series {expected}")
    if geom.is_regular or geom.n_slices < 2:
        if stack_image is not None:
            stack_image.CopyInformation(stack_grid(geom))
            return SeriesVolume(image=stack_image, geometry=geom, resampled=False)
        image = on_grid(np.ascontiguousarray(stack, dtype=np.float32), stack_grid(geom))
        return SeriesVolume(image=image, geometry=geom, resampled=False)
    return SeriesVolume(image=regular_volume(stack, geom), geometry=geom, resampled=True)


def hu_volume(array_dhw: np.ndarray, sorted_datasets: Sequence[Dataset]) -> sitk.Image:
    """The HU image of :func:`series_volume` (the series' own grid when it is regular)."""
    return series_volume(array_dhw, sorted_datasets).image
