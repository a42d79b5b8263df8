"""Slice geometry of a DICOM series: the one ordering every module uses, and where each pixel lies.

Real series are not always a regular grid: a gantry tilt shifts every slice's origin along its
column direction (the stack is sheared), and two-part acquisitions (4 mm in the posterior fossa,
7 mm above) change the step between slices. :class:`SliceGeometry` keeps every slice's own plane
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing), so results can be put back onto
the original instances exactly, whatever the stack looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from pydicom.dataset import Dataset

# Steps that differ by less than this, and in-plane shifts below this, count as a regular grid.
REGULAR_STEP_TOLERANCE_MM = 0.05
REGULAR_SHIFT_TOLERANCE_MM = 0.01


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


@dataclass(frozen=True)
class SliceGeometry:
    """Where every pixel of a sorted series lies (LPS mm).

    Pixel (row r, column c) of slice k is at ``origins[k] + c * pixel_mm[1] * row_dir +
    r * pixel_mm[0] * col_dir`` (DICOM PS3.3 C.7.6.2.1.1); all slices share the orientation.
    """

    origins: np.ndarray  # (N, 3) ImagePositionPatient of each slice, sorted along the normal
    row_dir: np.ndarray  # (3,) direction of increasing column index (IOP values 1-3)
    col_dir: np.ndarray  # (3,) direction of increasing row index (IOP values 4-6)
    pixel_mm: Tuple[float, float]  # (between rows, between columns): PixelSpacing order
    shape: Tuple[int, int]  # (rows, columns)
    thickness_mm: Tuple[float, ...]  # SliceThickness per slice (nan when absent)

    @classmethod
    def from_datasets(cls, sorted_datasets: Sequence[Dataset]) -> SliceGeometry:
        ds0 = sorted_datasets[0]
        iop = np.asarray(ds0.ImageOrientationPatient, dtype=float)
        row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
        thickness = tuple(float(ds.get("SliceThickness") or "nan") for ds in sorted_datasets)
        return cls(
            origins=np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in sorted_datasets]),
            row_dir=row_dir,
            col_dir=col_dir,
            pixel_mm=(float(ds0.PixelSpacing[0]), float(ds0.PixelSpacing[1])),
            shape=(int(ds0.Rows), int(ds0.Columns)),
            thickness_mm=thickness,
        )

    @property
    def n_slices(self) -> int:
        return int(self.origins.shape[0])

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    @property
    def positions(self) -> np.ndarray:
        """Position of each slice along the normal (mm), ascending."""
        return self.origins @ self.normal

    @property
    def steps(self) -> np.ndarray:
        return np.diff(self.positions)

    @property
    def shifts_mm(self) -> np.ndarray:
        """(N, 2) in-plane offset of each slice origin from slice 0: (along row_dir, along col_dir)."""
        d = self.origins - self.origins[0]
        return np.column_stack([d @ self.row_dir, d @ self.col_dir])

    def shear(self) -> np.ndarray:
        """In-plane shift per mm along the normal (least squares over all slices): (row, col)."""
        s = self.positions - self.positions[0]
        if self.n_slices < 2 or not np.any(s):
            return np.zeros(2)
        return np.linalg.lstsq(s[:, None], self.shifts_mm, rcond=None)[0][0]

    @property
    def tilt_deg(self) -> float:
        """Angle between the line through the slice origins and the slice normal (gantry tilt)."""
        return float(np.degrees(np.arctan(np.linalg.norm(self.shear()))))

    def off_line_mm(self) -> np.ndarray:
        """Distance of each slice origin from the straight line fitted through them (in-plane, mm)."""
        s = self.positions - self.positions[0]
        return np.linalg.norm(self.shifts_mm - s[:, None] * self.shear()[None, :], axis=1)

    @property
    def is_regular(self) -> bool:
        """One step between all slices and no shear: the stack is an ordinary ITK image grid."""
        steps = self.steps
        regular = steps.size == 0 or float(steps.max() - steps.min()) <= REGULAR_STEP_TOLERANCE_MM
        return bool(regular and np.abs(self.shifts_mm).max() <= REGULAR_SHIFT_TOLERANCE_MM)

    def slab_mm(self) -> np.ndarray:
        """Thickness of tissue each slice stands for: half the distance to each neighbour
        (ends: the adjacent step), so that the slabs tile the scanned range exactly once."""
        steps = self.steps
        if steps.size == 0:
            t = self.thickness_mm[0]
            return np.array([t if np.isfinite(t) else 1.0])
        padded = np.r_[steps[0], steps, steps[-1]]
        return (padded[:-1] + padded[1:]) / 2.0

    def slice_ml(self) -> np.ndarray:
        """Volume (ml) of one pixel of each slice."""
        return self.pixel_mm[0] * self.pixel_mm[1] * self.slab_mm() / 1000.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which physical points (M, 3) lie in the scanned slab: between the outer faces of the
        end slices along the normal and inside the slices' field of view in-plane (the origin
        of the slice plane through the point is interpolated between neighbouring slices)."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pos = self.positions
        half = self.slab_mm()
        s = pts @ self.normal
        inside = (s >= pos[0] - half[0] / 2.0) & (s <= pos[-1] + half[-1] / 2.0)
        origin = np.column_stack([np.interp(s, pos, self.origins[:, i]) for i in range(3)])
        d = pts - origin
        u = d @ self.row_dir / self.pixel_mm[1]  # column index
        v = d @ self.col_dir / self.pixel_mm[0]  # row index
        rows, cols = self.shape
        return inside & (u >= -0.5) & (u <= cols - 0.5) & (v >= -0.5) & (v <= rows - 0.5)
