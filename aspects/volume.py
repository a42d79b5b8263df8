"""A SimpleITK volume (LPS, HU) on the exact grid of a sorted DICOM series."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from aspects.dicom_geometry import slice_normal, slice_positions


def series_grid(sorted_datasets: Sequence[Dataset]) -> sitk.Image:
    """An empty image carrying the series geometry (origin, spacing, direction), size included."""
    ds0 = sorted_datasets[0]
    iop = np.asarray(ds0.ImageOrientationPatient, dtype=float)
    normal = slice_normal(ds0)
    pos = slice_positions(sorted_datasets)
    dz = float(np.median(np.diff(pos))) if len(pos) > 1 else float(ds0.get("SliceThickness", 1.0))
    row_mm, col_mm = (float(v) for v in ds0.PixelSpacing)  # between rows (y), between columns (x)
    img = sitk.Image(int(ds0.Columns), int(ds0.Rows), len(sorted_datasets), sitk.sitkUInt8)
    img.SetOrigin(tuple(float(v) for v in ds0.ImagePositionPatient))
    img.SetSpacing((col_mm, row_mm, dz))
    img.SetDirection(tuple(np.column_stack([iop[:3], iop[3:], normal]).ravel()))
    return img


def on_grid(array_zyx: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x) array in the geometry of ``grid``."""
    img = sitk.GetImageFromArray(array_zyx)
    img.CopyInformation(grid)
    return img


def hu_volume(array_dhw: np.ndarray, sorted_datasets: Sequence[Dataset]) -> sitk.Image:
    """HU volume (float32) from a rescaled pixel stack whose slices follow ``sorted_datasets``."""
    grid = series_grid(sorted_datasets)
    if tuple(array_dhw.shape) != tuple(reversed(grid.GetSize())):
        raise ValueError(f"pixel stack {array_dhw.shape} does not match the series grid {grid.GetSize()[::-1]}")
    return on_grid(np.ascontiguousarray(array_dhw, dtype=np.float32), grid)
