"""Bad input: each case gets one clear line on stderr, a defined exit code, and an untouched input.
(aspects-robustness runs a longer list of cases for docs/robustness.md.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pydicom
import pytest

from aspects.errors import (
    EXIT_BAD_SERIES,
    EXIT_MULTIPLE_STUDIES,
    EXIT_NO_DICOM,
    EXIT_NO_SERIES,
    EXIT_UNDECODABLE,
    EXIT_USAGE,
)
from tests.support.app_runs import run_app
from tests.test_app import tree_digest
from aspects_research.tools.robustness import (PRIVATE_SYNTAX, as_multiframe, copy_as_second_study, corrupt_pixel_stream, edit,
                                              encode, relabel_transfer_syntax, shear_positions)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def normal_case(phantom_case):
    return phantom_case(31, kind="normal", thickness=5.0)


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


def make_no_position(folder):
    files = _sorted_files(folder)
    edit([files[len(files) // 2]], lambda ds, i: delattr(ds, "ImagePositionPatient"))


def make_spacing_zero(folder):
    edit([_sorted_files(folder)[7]], lambda ds, i: setattr(ds, "PixelSpacing", [0, 0]))


def make_duplicate_uid(folder):
    files = _sorted_files(folder)
    uid = pydicom.dcmread(files[10], stop_before_pixels=True).SOPInstanceUID
    edit([files[11]], lambda ds, i: (setattr(ds, "SOPInstanceUID", uid), setattr(ds.file_meta, "MediaStorageSOPInstanceUID", uid)))


def make_interleaved(folder):
    def change(ds, i):  # every other slice: a second acquisition, the patient moved 8 mm
        if i % 2:
            ds.AcquisitionNumber = 2
            ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 8.0] + list(ds.ImagePositionPatient[1:])
    edit(_sorted_files(folder), change)


def make_no_pixels(folder):
    files = _sorted_files(folder)
    edit([files[len(files) // 2]], lambda ds, i: delattr(ds, "PixelData"))


def make_unknown_syntax(folder):
    relabel_transfer_syntax(folder, PRIVATE_SYNTAX)  # no decoder knows it


def make_corrupt_jpeg(folder):
    encode(folder, "jpeg-lossless-sv1")
    corrupt_pixel_stream(_sorted_files(folder)[12])


def make_too_tilted(folder):
    shear_positions(folder, 40.0)  # slice origins as a 40 degree gantry tilt leaves them (30 is the most corrected)


def make_two_studies(folder):
    copy_as_second_study(folder)


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
    ("no_position", make_no_position, EXIT_BAD_SERIES, "has no ImagePositionPatient"),
    ("pixel_spacing_zero", make_spacing_zero, EXIT_BAD_SERIES, "has PixelSpacing 0/0"),
    ("duplicate_uid", make_duplicate_uid, EXIT_BAD_SERIES, "is used by 2 different images"),
    ("interleaved", make_interleaved, EXIT_BAD_SERIES, "2 interleaved acquisitions in one series"),
    ("too_tilted", make_too_tilted, EXIT_BAD_SERIES, "gantry tilt of 40.0 deg"),
    ("unknown_syntax", make_unknown_syntax, EXIT_UNDECODABLE, "which this installation cannot decode"),
    ("corrupt_jpeg", make_corrupt_jpeg, EXIT_UNDECODABLE, "cannot be decoded"),
    ("two_studies", make_two_studies, EXIT_MULTIPLE_STUDIES, "2 studies"),
    ("multiframe_ct", as_multiframe, EXIT_NO_SERIES,
     "multi-frame CT (Legacy Converted Enhanced CT Image Storage, 39 frames in one file) is not supported: send the series"),

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


def test_image_without_pixel_data_is_named_in_one_console_line(normal_case, tmp_path):
    inp = tmp_path / "input"
    shutil.copytree(normal_case / "dicom", inp)
    make_no_pixels(inp)
    proc = run_app(inp, tmp_path / "out", timeout=300)
    assert proc.returncode == EXIT_BAD_SERIES and "missing slices" in proc.stderr.splitlines()[-1]
    skipped = [ln for ln in proc.stderr.splitlines() if "file(s) that are not usable" in ln]
    assert len(skipped) == 1 and "skipped 1 file(s)" in skipped[0] and "no pixel data" in skipped[0]
    assert "truncated" not in proc.stderr


def test_missing_input_folder_and_output_inside_input(normal_case, tmp_path):
    proc = run_app(tmp_path / "does-not-exist", tmp_path / "out", timeout=300)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    inp = tmp_path / "input"
    shutil.copytree(normal_case / "dicom", inp)
    before = tree_digest(inp)
    tmp = tmp_path / "tmp"  # the registrations' temporary folders go here ($TMPDIR)
    tmp.mkdir()
    proc = run_app(inp, inp / "results", timeout=300, extra_env={"TMPDIR": str(tmp)})
    assert proc.returncode == EXIT_USAGE and "must not be inside the input" in proc.stderr.splitlines()[-1]
    assert tree_digest(inp) == before
    # The run failed while its head start's first registration worked: nothing of it stays behind.
    assert not list(tmp.iterdir()), list(tmp.iterdir())
