"""Small DICOM files for the listener tests: a CT series, an MR instance, broken instances.

The listener only moves instances; these files are valid DICOM (or deliberately not) but tiny,
so the network tests stay fast. The end-to-end tests use the project's head phantoms instead.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import List

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.sop_class import CTImageStorage, MRImageStorage


def _image(sop_class: str, study: str, series: str, k: int, size: int, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "Listener^Test", "LT001"
    ds.Modality = modality
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "A1", "1"
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 5.0 * k]
    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 5.0
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.full((size, size), 1024 + 30 + k, np.int16)).tobytes()
    return ds


def write_ct_series(folder: Path, n: int = 6, study_uid: str | None = None, size: int = 16) -> List[Path]:
    """`n` CT Image Storage instances of one study/series; returns the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = study_uid or generate_uid(), generate_uid()
    paths = []
    for k in range(n):
        ds = _image(CTImageStorage, study, series, k, size, "CT")
        p = folder / f"ct{k:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def write_mr_instance(path: Path) -> Path:
    ds = _image(MRImageStorage, generate_uid(), generate_uid(), 0, 16, "MR")
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_without_study_uid(path: Path) -> Path:
    ds = _image(CTImageStorage, generate_uid(), generate_uid(), 0, 16, "CT")
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def write_unparseable_ct(path: Path) -> Path:
    """File meta (CT, Explicit VR LE), SOP Class and Instance UIDs, then an element that claims
    more bytes than the file holds: a sender can transmit it, no decoder can read it."""
    ds = _image(CTImageStorage, generate_uid(), generate_uid(), 0, 16, "CT")
    head = Dataset()
    head.file_meta = ds.file_meta
    head.SOPClassUID, head.SOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    head.save_as(path, enforce_file_format=True)
    # (0010,0010) PN with a length of 0xFFF0 and 8 bytes of value.
    bad = struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 0xFFF0) + b"Broken^X"
    path.write_bytes(path.read_bytes() + bad)
    return path
