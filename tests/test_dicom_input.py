"""Input folder scanning: empty, non-DICOM and corrupt files."""

import pytest
from pydicom.dataset import FileMetaDataset, Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from aspects.dicom_input import scan_folder
from aspects.errors import EXIT_NO_DICOM, EXIT_USAGE, InputError


def write_ct(path, rows=8):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 15, 1, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\0\0" * rows * rows
    ds.save_as(path, enforce_file_format=True)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(InputError) as e:
        scan_folder(tmp_path / "nope")
    assert e.value.code == EXIT_USAGE
    with pytest.raises(InputError) as e:
        scan_folder(tmp_path)
    assert e.value.code == EXIT_NO_DICOM and "is empty" in e.value.message


def test_only_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "img.dcm").write_bytes(b"\x00" * 300)
    with pytest.raises(InputError) as e:
        scan_folder(tmp_path)
    assert e.value.code == EXIT_NO_DICOM and "2 file(s)" in e.value.message


def test_corrupt_and_truncated_files_are_skipped_and_named(tmp_path):
    write_ct(tmp_path / "good.dcm")
    write_ct(tmp_path / "cut.dcm")
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-60])  # truncated pixel data
    (tmp_path / "junk.dcm").write_bytes(b"DICM" * 50)
    scan = scan_folder(tmp_path)
    assert [p.split("/")[-1] for p in (str(d.filename) for d in scan.datasets)] == ["good.dcm"]
    skipped = {p.split("/")[-1]: why for p, why in scan.skipped}
    assert set(skipped) == {"cut.dcm", "junk.dcm"}
    assert "truncated" in skipped["cut.dcm"]
