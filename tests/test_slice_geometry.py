"""Geometry of real series: gantry tilt and unequal slice steps, on header-only datasets.

A linear intensity field f(p) = a . p + b is exact under linear interpolation, so after
resampling (tilt removed, steps made equal) and after mapping back onto the original slices every
value must equal f at that voxel's physical position: the checks below are physical, not about
indices.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from aspects.dicom_geometry import SliceGeometry, sort_slices
from aspects.preprocess import to_slices
from aspects.volume import series_volume

A, B = np.array([0.7, -0.4, 1.3]), 20.0


def _series(positions, tilt_deg=0.0, rows=40, cols=48, px=(2.0, 1.5)):
    """Axial-ish slices as a tilted gantry makes them: the image plane is tilted about x, the table
    (slice origin) moves along z; ``positions`` are table positions (mm)."""
    t = np.radians(tilt_deg)
    row_dir, col_dir = np.array([1.0, 0, 0]), np.array([0, np.cos(t), -np.sin(t)])
    out = []
    for k, z in enumerate(positions):
        ds = Dataset()
        ds.ImageOrientationPatient = list(row_dir) + list(col_dir)
        ds.ImagePositionPatient = [-30.0, -35.0, float(z)]
        ds.PixelSpacing, ds.Rows, ds.Columns, ds.SliceThickness = list(px), rows, cols, 5.0
        ds.InstanceNumber = k + 1
        out.append(ds)
    return out[::-1]  # file order is not slice order


def _field(geom: SliceGeometry) -> np.ndarray:
    """f at every pixel of every slice, (N, rows, cols)."""
    rows, cols = geom.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    pts = (geom.origins[:, None, None, :] + c[None, ..., None] * geom.pixel_mm[1] * geom.row_dir
           + r[None, ..., None] * geom.pixel_mm[0] * geom.col_dir)
    return (pts @ A + B).astype(np.float32)


TABLES = {"two_part": [4.0 * i for i in range(8)] + [29.08 + 7.0 * i for i in range(6)],
          "regular": [5.0 * i for i in range(12)]}


@pytest.mark.parametrize("tilt", [-20.0, 0.0, 18.5])
@pytest.mark.parametrize("table", list(TABLES))
def test_resampled_grid_holds_the_same_physical_values(tilt, table):
    src = sort_slices(_series(TABLES[table], tilt))
    geom = SliceGeometry.from_datasets(src)
    assert geom.tilt_deg == pytest.approx(abs(tilt), abs=1e-6)
    vol = series_volume(_field(geom), src)
    assert vol.resampled == (tilt != 0.0 or table == "two_part")
    img = vol.image
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)  # orthogonal: no shear left
    arr = sitk.GetArrayFromImage(img)
    zz, yy, xx = np.nonzero(arr > -1000)  # voxels some slice covers
    idx = np.column_stack([xx, yy, zz]).astype(float)
    pts = np.asarray(img.GetOrigin()) + (idx * np.asarray(img.GetSpacing())) @ d.T
    inside = geom.contains(pts)
    assert inside.mean() > 0.95
    np.testing.assert_allclose(arr[zz, yy, xx][inside], (pts @ A + B)[inside], atol=1e-3)


@pytest.mark.parametrize("tilt", [-20.0, 18.5])
def test_results_map_back_onto_each_original_slice_plane(tilt):
    src = sort_slices(_series(TABLES["two_part"], tilt))
    geom = SliceGeometry.from_datasets(src)
    aligned = sitk.Image([60, 70, 80], sitk.sitkFloat32)  # an "aligned" grid around the slab
    aligned.SetOrigin((-40.0, -50.0, -30.0))
    aligned.SetSpacing((2.0, 2.0, 2.0))
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in (80, 70, 60)), indexing="ij")
    pts = np.stack([xx, yy, zz], -1) * 2.0 + np.array([-40.0, -50.0, -30.0])
    aligned = sitk.GetImageFromArray((pts @ A + B).astype(np.float32))
    aligned.SetOrigin((-40.0, -50.0, -30.0))
    aligned.SetSpacing((2.0, 2.0, 2.0))
    pre = SimpleNamespace(source_to_aligned=sitk.AffineTransform(3))  # identity: aligned = patient space
    back = to_slices(pre, aligned, geom, label=False)
    assert back.shape == (len(src), 40, 48)
    np.testing.assert_allclose(back, _field(geom), atol=1e-3)


def test_slabs_tile_the_scanned_range_and_contains_follows_the_tilt():
    src = sort_slices(_series(TABLES["two_part"], 18.5))
    geom = SliceGeometry.from_datasets(src)
    assert geom.slab_mm().sum() == pytest.approx(geom.positions[-1] - geom.positions[0] + geom.slab_mm()[[0, -1]].sum() / 2)
    centre_0 = geom.origins[0] + 10 * geom.row_dir + 10 * geom.col_dir
    centre_top = geom.origins[-1] + 10 * geom.row_dir + 10 * geom.col_dir
    normal = geom.normal
    assert geom.contains(np.array([centre_0, centre_top, (centre_0 + centre_top) / 2])).all()
    below, above = centre_0 - 3.0 * normal, centre_top + 5.0 * normal  # beyond half an end slab
    assert not geom.contains(np.array([below, above])).any()
    # in-plane: the slice origin itself is inside, a point 1 cm before it (along the row) is not
    assert geom.contains(geom.origins[[3]]).all() and not geom.contains(geom.origins[[3]] - 10 * geom.row_dir).any()
