"""aspects_research.tools.perturbed_heads: a DICOM series changed slice by slice keeps its geometry
and leaves the input alone; the versions run are the head as given, then each change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from aspects_research.tools.perturbed_heads import changes, dicom_version
from tests.test_app import tree_digest

GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SOPInstanceUID")


def test_versions_are_the_head_as_given_then_each_change():
    assert changes([10.0], [1, 2]) == [("as given", {}), ("noise 10 HU", {"noise_sd": 10.0}),
                                       ("CSF widened 1 voxel", {"widen_csf": 1}), ("CSF widened 2 voxels", {"widen_csf": 2})]


def test_every_turn_is_tried_both_ways_after_the_other_changes():
    assert changes([], [1], [20.0], ["yaw", "pitch"]) == [
        ("as given", {}), ("CSF widened 1 voxel", {"widen_csf": 1}),
        ("yaw +20 deg", {"rotate": ["yaw", 20.0]}), ("yaw -20 deg", {"rotate": ["yaw", -20.0]}),
        ("pitch +20 deg", {"rotate": ["pitch", 20.0]}), ("pitch -20 deg", {"rotate": ["pitch", -20.0]})]


def test_a_dicom_series_gets_the_noise_on_every_slice_and_keeps_its_geometry(phantom_case, tmp_path: Path):
    series = phantom_case(9, kind="normal", thickness=5.0) / "dicom"
    before = tree_digest(series)
    same = dicom_version(series, {}, tmp_path / "same")
    noisy = dicom_version(series, {"noise_sd": 10.0}, tmp_path / "noisy")
    assert tree_digest(series) == before  # the input is only read
    files = sorted(p.name for p in series.iterdir())
    assert sorted(p.name for p in noisy.iterdir()) == files
    diffs = []
    for name in files:
        a, b, c = (pydicom.dcmread(d / name) for d in (series, same, noisy))
        assert all(a.get(t) == c.get(t) for t in GEOMETRY)
        assert np.array_equal(a.pixel_array, b.pixel_array)
        diffs.append(c.pixel_array.astype(np.float64) - a.pixel_array)
    d = np.concatenate([x.ravel() for x in diffs]) * float(getattr(a, "RescaleSlope", 1))
    assert abs(d.std() - 10.0) < 0.5 and abs(d.mean()) < 0.2
