"""Bad input: each case gets one clear line on stderr, a defined exit code, and an untouched input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pydicom
import pytest
from pydicom.uid import generate_uid

from aspects.errors import (
    EXIT_BAD_SERIES,
    EXIT_MULTIPLE_STUDIES,
    EXIT_NO_DICOM,
    EXIT_NO_SERIES,
    EXIT_USAGE,
)
from tests.conftest import run_app
from tests.phantom_fixtures import make_case, phantom_root  # noqa: F401  (fixture)
from tests.test_app import tree_digest


@pytest.fixture(scope="module")
def normal_case(phantom_root):  # noqa: F811
    return make_case(phantom_root, 31, kind="normal", thickness=5.0)


def _edit_all(folder: Path, edit: Callable[[pydicom.Dataset, int], None]) -> None:
    files = sorted(folder.glob("*.dcm"), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    for i, p in enumerate(files):
        ds = pydicom.dcmread(p)
        edit(ds, i)
        ds.save_as(p)


def _sorted_files(folder: Path):
    return sorted(folder.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))


def make_mr(folder):
    def edit(ds, i):
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    _edit_all(folder, edit)


def make_contrast(folder):
    _edit_all(folder, lambda ds, i: setattr(ds, "ContrastBolusAgent", "Iohexol 350"))


def make_localizer(folder):
    keep = _sorted_files(folder)[:2]
    for p in folder.glob("*.dcm"):
        if p not in keep:
            p.unlink()
    _edit_all(folder, lambda ds, i: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))


def make_missing(folder):
    files = _sorted_files(folder)
    files[len(files) // 2].unlink()


def make_mixed(folder):
    files = _sorted_files(folder)
    for p in files[len(files) // 2:]:  # the upper half moves 2.5 mm down: one step of 2.5 mm
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], ds.ImagePositionPatient[2] - 2.5]
        ds.save_as(p)


def make_two_studies(folder):
    second = folder / "second"
    second.mkdir()
    study, series = generate_uid(), generate_uid()
    for p in list(folder.glob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(second / p.name)


def make_non_dicom(folder):
    for p in folder.glob("*.dcm"):
        p.unlink()
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 not an image")
    (folder / "notes.txt").write_text("hello")


def make_empty(folder):
    for p in folder.iterdir():
        p.unlink()


CASES = [
    ("empty", make_empty, EXIT_NO_DICOM, "is empty"),
    ("non_dicom", make_non_dicom, EXIT_NO_DICOM, "no readable DICOM image"),
    ("mr_only", make_mr, EXIT_NO_SERIES, "modality MR"),
    ("contrast_only", make_contrast, EXIT_NO_SERIES, "contrast-enhanced"),
    ("localizer_only", make_localizer, EXIT_NO_SERIES, "localizer"),
    ("missing_slices", make_missing, EXIT_BAD_SERIES, "missing slices"),
    ("mixed_spacing", make_mixed, EXIT_BAD_SERIES, "mixed slice spacing"),
    ("two_studies", make_two_studies, EXIT_MULTIPLE_STUDIES, "2 studies"),
]


@pytest.mark.parametrize("name, damage, code, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_exit_code(normal_case, tmp_path, name, damage, code, words):
    inp = tmp_path / "input"
    shutil.copytree(normal_case / "dicom", inp)
    damage(inp)
    before = tree_digest(inp)
    proc = run_app(inp, tmp_path / "out", timeout=300)
    assert proc.returncode == code, proc.stderr[-1500:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"error[{code}]: ") and words in lines[-1], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert tree_digest(inp) == before
    assert (tmp_path / "out" / "error.json").is_file()


def test_gantry_tilt_is_refused_with_a_reason(phantom_root, tmp_path):  # noqa: F811
    case = make_case(phantom_root, 32, kind="normal", thickness=5.0, tilt_deg=12.0)
    proc = run_app(case / "dicom", tmp_path / "out", timeout=300)
    assert proc.returncode == EXIT_BAD_SERIES
    assert "gantry tilt of 12.0 deg" in proc.stderr.splitlines()[-1]


def test_missing_input_folder_and_output_inside_input(normal_case, tmp_path):
    proc = run_app(tmp_path / "does-not-exist", tmp_path / "out", timeout=300)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    inp = tmp_path / "input"
    shutil.copytree(normal_case / "dicom", inp)
    before = tree_digest(inp)
    proc = run_app(inp, inp / "results", timeout=300)
    assert proc.returncode == EXIT_USAGE and "must not be inside the input" in proc.stderr.splitlines()[-1]
    assert tree_digest(inp) == before
