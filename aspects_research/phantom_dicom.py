"""Write a generated phantom as a scanner-like CT series plus its truth files.

Storage follows two common vendor styles, chosen per case: signed 16-bit with RescaleIntercept
-1024 and padding (-2000 stored) outside the reconstruction circle, or unsigned 12-bit with
RescaleIntercept -1024 (stored 0 outside the circle). No contrast-agent attributes are written.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Dict

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from aspects.errors import EXIT_USAGE, InputError
from aspects_research.phantoms import Phantom, _child_rngs

VENDORS = (
    # name, model, kernels, signed storage
    ("GE MEDICAL SYSTEMS", "Revolution (synthetic)", ("STANDARD", "SOFT"), True),
    ("SIEMENS", "SOMATOM (synthetic)", ("H30s", "J40s", "Hr38"), False),
    ("CANON_MEC", "Aquilion (synthetic)", ("FC21", "FC26"), True),
)
INTERCEPT = -1024.0


def _uids(seed: int, n: int) -> Dict[str, object]:
    """Deterministic UIDs for a case (pydicom's prefix, entropy = seed + role)."""
    mk = lambda role: generate_uid(entropy_srcs=["aspects-phantom", str(seed), role])  # noqa: E731
    return {
        "study": mk("study"),
        "series": mk("series"),
        "for": mk("frame-of-reference"),
        "sop": [mk(f"sop-{i}") for i in range(n)],
    }


def stored_pixels(hu: np.ndarray, signed: bool) -> np.ndarray:
    """HU -> stored values (slope 1, intercept -1024), padding outside the reconstruction circle."""
    n = hu.shape[-1]
    g = (np.arange(n) - (n - 1) / 2.0) ** 2
    outside = (g[:, None] + g[None, :]) > (n / 2.0) ** 2
    sv = np.clip(np.rint(hu - INTERCEPT), 0, 4095)  # HU -1024..3071, as 12-bit detectors give
    if signed:
        sv = sv.astype(np.int16)
        sv[:, outside] = -2000
    else:
        sv = sv.astype(np.uint16)
        sv[:, outside] = 0
    return sv


def write_series(ph: Phantom, dicom_dir: Path, case_id: str) -> int:
    """One CT Image Storage file per slice; returns the number of files."""
    p = ph.params
    r = _child_rngs(p.seed)["dicom"]
    manufacturer, model, kernels, signed = VENDORS[int(r.integers(len(VENDORS)))]
    kernel = kernels[int(r.integers(len(kernels)))]
    n = ph.hu.shape[0]
    uid = _uids(p.seed, n)
    when = dt.datetime(2024, 1, 1, 8, 0, 0) + dt.timedelta(minutes=int(r.integers(0, 365 * 24 * 60)))
    birth = when - dt.timedelta(days=int(r.integers(40 * 365, 90 * 365)))
    sex = "M" if r.uniform() < 0.5 else "F"
    kvp = float(r.choice([100.0, 120.0, 120.0, 140.0]))
    ma = int(r.integers(150, 350))
    descending = bool(r.uniform() < 0.5)  # instance numbers from the vertex down, or from below up
    normal = ph.normal
    dicom_dir.mkdir(parents=True, exist_ok=True)
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    for k in range(n):
        ipp = ph.origin + k * ph.step
        inst = (n - k) if descending else (k + 1)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = uid["sop"][k]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = uid["sop"][k]
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
        ds.AccessionNumber = f"A{p.seed:08d}"
        ds.Modality = "CT"
        ds.Manufacturer = manufacturer
        ds.ManufacturerModelName = model
        ds.InstitutionName = "Synthetic phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT HEAD WO CONTRAST"
        ds.SeriesDescription = f"Head {p.thickness:g}mm {kernel}"
        ds.PatientName = f"PHANTOM^{case_id}"
        ds.PatientID = case_id
        ds.PatientBirthDate = birth.strftime("%Y%m%d")
        ds.PatientSex = sex
        ds.PatientAge = f"{(when - birth).days // 365:03d}Y"
        ds.BodyPartExamined = "HEAD"
        ds.ScanOptions = "AXIAL MODE"
        ds.SliceThickness = f"{p.thickness:g}"
        ds.SpacingBetweenSlices = f"{ph.slice_spacing:.6g}"
        ds.KVP = f"{kvp:g}"
        ds.DataCollectionDiameter = "250"
        ds.ReconstructionDiameter = f"{ph.pixel_mm * ph.hu.shape[-1]:.2f}"
        ds.GantryDetectorTilt = f"{p.tilt_deg:g}"
        ds.TableHeight = "150"
        ds.XRayTubeCurrent = ma
        ds.ExposureTime = 1000
        ds.ConvolutionKernel = kernel
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = uid["study"]
        ds.SeriesInstanceUID = uid["series"]
        ds.StudyID = str(p.seed)
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = inst
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.r_[ph.row, ph.col]]
        ds.FrameOfReferenceUID = uid["for"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{float(np.dot(normal, ipp)):.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(ph.hu.shape[1]), int(ph.hu.shape[2])
        ds.PixelSpacing = [f"{ph.pixel_mm:.6f}", f"{ph.pixel_mm:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 16 if signed else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if signed:
            ds.PixelPaddingValue = -2000
        ds.WindowCenter = ["40", "35"]
        ds.WindowWidth = ["80", "40"]
        ds.RescaleIntercept = f"{INTERCEPT:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.ImageComments = "SYNTHETIC PHANTOM - not patient data"
        ds.PixelData = stored_pixels(ph.hu[k:k + 1], signed)[0].tobytes()
        ds.save_as(dicom_dir / f"IM{inst:04d}.dcm", enforce_file_format=True)
    return n


def write_case(ph: Phantom, out_dir: Path, case_id: str) -> Path:
    """``out_dir/case_id/{dicom/, truth/, params.json, truth.json}``; returns the case folder.

    An earlier case of the same name is replaced (stale slice files would corrupt the series);
    a folder of that name that is not a phantom case is left alone and reported.
    """
    case = Path(out_dir) / case_id
    if case.exists():
        if not ((case / "dicom").is_dir() or (case / "truth.json").is_file() or not any(case.iterdir())):
            raise InputError(EXIT_USAGE, f"{case} exists and is not a phantom case; choose another --out")
        shutil.rmtree(case)
    write_series(ph, case / "dicom", case_id)
    truth = case / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ph.sitk_image(ph.infarct), str(truth / "infarct.nii.gz"), True)
    sitk.WriteImage(ph.sitk_image(ph.regions), str(truth / "regions.nii.gz"), True)
    for name, mask in ph.extra_masks.items():
        sitk.WriteImage(ph.sitk_image(mask), str(truth / f"{name}.nii.gz"), True)
    params = {**asdict(ph.params), "pixel_mm": ph.pixel_mm, "n_slices": int(ph.hu.shape[0])}
    (case / "params.json").write_text(json.dumps(params, indent=2) + "\n")  # every draw, for analysis
    (case / "truth.json").write_text(json.dumps(ph.truth, indent=2) + "\n")  # last: marks the case complete
    return case
