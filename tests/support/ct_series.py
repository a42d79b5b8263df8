"""A tiny but DICOM-complete CT head series, with region/infarct masks and a result dict.

Used by tests/test_writers.py: 10 axial slices of 128 x 128, 1.6 mm pixels, 5 mm slices,
stored in reverse order on purpose so the writers must rely on the sorted list they are given.
"""

from __future__ import annotations

import copy
import datetime
from typing import List, Tuple

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from aspects.dicom_geometry import sort_slices
from aspects.labels import REGION_CODES, SIDES, label_value

N_SLICES, SIZE, PIXEL_MM, SLICE_MM = 10, 128, 1.6, 5.0
BG_SLICE, SG_SLICE = 3, 7  # axis-0 indices on the sorted grid


def make_ct_series(n: int = N_SLICES, size: int = SIZE) -> List[Dataset]:
    """Sorted list of CT datasets (pixel data in memory) of an ellipsoidal 'head'."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    zz, yy, xx = np.mgrid[0:n, 0:size, 0:size]
    c = (size - 1) / 2
    r = ((xx - c) / (0.42 * size)) ** 2 + ((yy - c) / (0.48 * size)) ** 2
    hu = np.full((n, size, size), -1000.0)
    hu[r <= 1.0] = 1000.0  # skull
    hu[r <= 0.85] = 35.0  # brain
    hu[(np.abs(xx - c) < 3) & (r <= 0.85)] = 10.0  # falx / CSF line
    out = []
    today = datetime.date(2024, 5, 17).strftime("%Y%m%d")
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Writers", "PH-0001", "19500101", "F"
        ds.PatientAge = "074Y"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC42", ""
        ds.StudyDescription, ds.SeriesDescription = "CT HEAD", "HEAD 5mm"
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "Synthetic", 2, n - k
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP, ds.BodyPartExamined, ds.PatientPosition = 120, "HEAD", "HFS"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-c * PIXEL_MM, -c * PIXEL_MM, -20.0 + SLICE_MM * k]
        ds.SliceThickness, ds.PixelSpacing, ds.SliceLocation = SLICE_MM, [PIXEL_MM, PIXEL_MM], -20.0 + SLICE_MM * k
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.PixelData = (hu[k] + 1024).astype(np.int16).tobytes()
        out.append(ds)
    return sort_slices(list(reversed(out)))


def make_masks(n: int = N_SLICES, size: int = SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """(infarct bool, regions uint8) on the source grid: BG regions on slices 2-4, SG on 6-8.

    Patient right is image left (x small) for the identity orientation; the infarct covers
    part of left L, left M2 and left M5.
    """
    regions = np.zeros((n, size, size), np.uint8)
    c = size // 2
    bg = [("C", 40, 10), ("L", 52, 18), ("IC", 60, 12), ("I", 60, 30), ("M1", 30, 34), ("M2", 62, 44), ("M3", 94, 34)]
    sg = [("M4", 40, 30), ("M5", 64, 42), ("M6", 88, 30)]
    for side in SIDES:
        sign = -1 if side == "right" else 1
        for slices, table in ((range(2, 5), bg), (range(6, 9), sg)):
            for code, y, dx in table:
                x = c + sign * dx
                regions[slices.start : slices.stop, y - 5 : y + 5, min(x, x + sign * 8) : max(x, x + sign * 8)] = label_value(side, code)
    infarct = np.zeros_like(regions, dtype=bool)
    for code in ("L", "M2", "M5"):
        infarct |= regions == label_value("left", code)
    infarct[:, :, : c + 22] = False  # half of left L
    return infarct, regions


def make_result(source: List[Dataset], infarct: np.ndarray, regions: np.ndarray) -> dict:
    """An aspects.json dict consistent with the masks (involved = >= 10 % of the region)."""
    ps = [float(v) for v in source[0].PixelSpacing]
    voxel_ml = ps[0] * ps[1] * float(source[0].SliceThickness) / 1000.0
    per_side: dict = {}
    aspects = {}
    for side in SIDES:
        per_side[side] = {}
        for code in REGION_CODES:
            m = regions == label_value(side, code)
            hit = int((m & infarct).sum())
            frac = hit / max(int(m.sum()), 1)
            per_side[side][code] = {"involved": frac >= 0.1, "infarct_fraction": round(frac, 4),
                                    "infarct_ml": round(hit * voxel_ml, 3), "region_ml": round(int(m.sum()) * voxel_ml, 3)}
        aspects[side] = 10 - sum(v["involved"] for v in per_side[side].values())
    affected = "left" if aspects["left"] < aspects["right"] else ("right" if aspects["right"] < aspects["left"] else None)
    return {
        "schema_version": 1,
        "study_instance_uid": str(source[0].StudyInstanceUID),
        "series_instance_uid": str(source[0].SeriesInstanceUID),
        "affected_side": affected,
        "aspects": aspects,
        "score": aspects[affected] if affected else 10,
        "infarct_volume_ml": round(float(infarct.sum()) * voxel_ml, 3),
        "regions": per_side,
        "flags": [],
        "methods": {"regions": "atlas", "infarct": "model",
                    "infarct_model": {"version": "0.5.0", "second_channel": "contra", "mirror_tta": "agree"}},
        "device": "cpu",
        "timings_s": {"load": 0.1},
        "outputs": {},
        "not_for_diagnostic_use": True,
        "app": {"name": "aspects-ncct", "version": "0.1.0"},
    }


def make_incomplete_result(result: dict, missing: List[Tuple[str, str]]) -> dict:
    """``result`` as the "not assessable" contract (notes/CONTRACTS.md, schema 2) writes it when the
    series does not cover the regions ``missing`` [(side, code), ...]: those regions are
    ``assessable: false`` with ``involved: null`` (their numbers kept), their side's ASPECTS is
    null, and so is ``score`` when it came from such a side; flag ``incomplete_coverage``.
    """
    out = copy.deepcopy(result)
    out["schema_version"] = 2
    for side, code in missing:
        out["regions"][side][code].update(assessable=False, involved=None)
    for side in {s for s, _ in missing}:
        out["aspects"][side] = None
    scored = [out["affected_side"]] if out["affected_side"] else list(SIDES)
    if any(out["aspects"][s] is None for s in scored):
        out["score"] = None
    out["flags"] = out["flags"] + ["incomplete_coverage"]
    out["flag_details"] = {"incomplete_coverage": {"regions": [f"{s} {c}" for s, c in missing]}}
    return out
