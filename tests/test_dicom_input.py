"""Input folder scanning: empty, non-DICOM and corrupt files, files without preamble or pixel
data, duplicate copies, many skipped files, encodings no decoder handles."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.dataset import FileMetaDataset, Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from aspects.dicom_input import check_decodable, read_dataset, scan_folder
from aspects.errors import EXIT_NO_DICOM, EXIT_UNDECODABLE, EXIT_USAGE, InputError


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


def test_image_without_pixel_data_is_named_as_such_not_as_truncated(tmp_path):
    write_ct(tmp_path / "good.dcm")
    write_ct(tmp_path / "empty.dcm")
    ds = dcmread(tmp_path / "empty.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm")
    scan = scan_folder(tmp_path)
    assert dict((p.split("/")[-1], why) for p, why in scan.skipped) == {"empty.dcm": "no pixel data"}


def test_file_without_preamble_is_read_and_decodes(tmp_path):
    write_ct(tmp_path / "with.dcm")
    ds = dcmread(tmp_path / "with.dcm")
    ds.PixelData = np.arange(64, dtype=np.int16).tobytes()
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)  # the bare data set: no preamble, no 'DICM', no file meta
    (tmp_path / "raw.dcm").write_bytes(buf.getvalue())
    scan = scan_folder(tmp_path)
    assert sorted(Path(str(d.filename)).name for d in scan.datasets) == ["raw.dcm", "with.dcm"]
    assert [Path(p).name for p in scan.no_preamble] == ["raw.dcm"]
    full, _, no_preamble = read_dataset(str(tmp_path / "raw.dcm"))
    assert no_preamble and full.pixel_array.ravel().tolist() == list(range(64))


def test_byte_identical_copies_are_kept_once(tmp_path):
    write_ct(tmp_path / "a.dcm")
    shutil.copy(tmp_path / "a.dcm", tmp_path / "a_copy.dcm")
    write_ct(tmp_path / "b.dcm")
    scan = scan_folder(tmp_path)
    assert sorted(Path(str(d.filename)).name for d in scan.datasets) == ["a.dcm", "b.dcm"]
    assert [(Path(c).name, Path(k).name) for c, k in scan.duplicates] == [("a_copy.dcm", "a.dcm")]


def test_many_junk_files_give_one_summary_line(tmp_path, caplog):
    write_ct(tmp_path / "good.dcm")
    for i in range(300):
        (tmp_path / f"junk{i:03d}.bin").write_bytes(b"not dicom %d" % i)
    with caplog.at_level(logging.DEBUG):
        scan = scan_folder(tmp_path)
    console = [r for r in caplog.records if r.levelno >= logging.INFO and "skipped" in r.getMessage()]
    assert len(console) == 1
    line = console[0].getMessage()
    assert "skipped 300 file(s)" in line and "junk000.bin, junk001.bin, junk002.bin and 297 more" in line
    per_file = [r for r in caplog.records if r.name == "aspects.skipped"]
    assert len(per_file) == 300 and all(r.levelno == logging.DEBUG for r in per_file)
    assert len(scan.skipped) == 300


def test_undecodable_transfer_syntax_is_refused_before_the_pipeline(tmp_path):
    write_ct(tmp_path / "htj2k.dcm")
    ds = dcmread(tmp_path / "htj2k.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.999"  # no decoder knows it
    with pytest.raises(InputError) as e:
        check_decodable([ds])
    assert e.value.code == EXIT_UNDECODABLE and "1.2.840.10008.1.2.4.999" in e.value.message
    assert "cannot decode" in e.value.message
