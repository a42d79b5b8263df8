"""Slice geometry of a DICOM series: the one ordering every module uses."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
from pydicom.dataset import Dataset


def slice_normal(ds: Dataset) -> np.ndarray:
    """Unit normal of an axial slice from ImageOrientationPatient (row x column)."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


def slice_positions(datasets: Sequence[Dataset]) -> np.ndarray:
    """Position of each slice along the series normal (mm)."""
    n = slice_normal(datasets[0])
    return np.array([float(np.dot(n, np.asarray(ds.ImagePositionPatient, dtype=float))) for ds in datasets])


def sort_slices(datasets: Sequence[Dataset]) -> List[Dataset]:
    """Datasets in ascending position along the slice normal.

    Index k of this list is index k (numpy axis 0) of every volume and mask on the
    source grid: the SimpleITK image built from the series, the SEG frames, the truth files.
    """
    pos = slice_positions(datasets)
    return [datasets[i] for i in np.argsort(pos, kind="stable")]
