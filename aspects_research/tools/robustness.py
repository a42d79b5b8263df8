"""Build bad and odd inputs, run the app (and the listener) on each, and write docs/robustness.md.

    aspects-robustness --work build/robustness [--doc docs/robustness.md] [--only NAME ...]

Every case starts from a synthetic 5 mm head study (aspects-make-phantoms's generator) or the
real GE series in ../shared/data/real/ge_tilted_head_dicom, damages or re-encodes a copy with the
tools a user would meet (dcmtk's dcmcjpeg / dcmcjpls / dcmcrle / dcmconv, gdcmconv, pydicom),
runs ``python app.py -i -o -m`` as a user does and records the exit code, the one-line error
(or, for a result, the ASPECTS and flags), whether the input folder is unchanged and whether a
traceback reached the console. The table in the doc is this script's output, nothing else.

The builders are importable (tests use them): :func:`encode`, :func:`strip_preamble`,
:func:`corrupt_pixel_stream`, :func:`sorted_files`, :func:`edit`, :func:`shear_positions`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]  # the repository (a source checkout)

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filewriter import write_dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from scipy import ndimage  # noqa: E402

from aspects_research.tools.evaluate import command_line, git_describe, machine_info, machine_line  # noqa: E402

GE_SERIES = ROOT.parent / "shared" / "data" / "real" / "ge_tilted_head_dicom" / "dicom"
# GPL-2, tests only: used here as input, never copied into the repository.
INVESALIUS = ROOT.parent / "shared" / "data" / "real" / "invesalius_head_ct" / "cranium_ct.nii.gz"
PRIVATE_SYNTAX = "1.3.46.670589.33.1.4.1"  # Philips' private compressed syntax: no public decoder
_SYSTEM = "/usr/local/bin:/usr/bin:/bin"  # dcmtk's tools, not pynetdicom's same-named scripts

# syntax name -> command (input, output) of an independent encoder; "{i}"/"{o}" are the files.
ENCODERS: Dict[str, Sequence[str]] = {
    "jpeg-lossless-sv1": ("dcmcjpeg", "+e1", "{i}", "{o}"),  # JPEG Lossless, process 14, SV1
    "jpeg-ls-lossless": ("dcmcjpls", "{i}", "{o}"),
    "jpeg-ls-near-lossless": ("gdcmconv", "--jpegls", "--lossy", "{i}", "{o}"),
    "jpeg2000-lossless": ("gdcmconv", "--j2k", "{i}", "{o}"),
    "jpeg2000-lossy": ("gdcmconv", "--j2k", "--lossy", "-q", "90", "{i}", "{o}"),
    "rle": ("dcmcrle", "{i}", "{o}"),
    "deflated": ("dcmconv", "+td", "{i}", "{o}"),
}


# ----------------------------------------------------------------------------- builders
def sorted_files(folder: Path) -> List[Path]:
    """The folder's DICOM files in ascending position along the slice normal."""
    def pos(p: Path) -> float:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        return float(np.dot(np.cross(iop[:3], iop[3:]), np.asarray(ds.ImagePositionPatient, float)))
    return sorted((p for p in Path(folder).rglob("*") if p.is_file() and p.suffix == ".dcm"), key=pos)


def edit(files: Sequence[Path], change: Callable[[pydicom.Dataset, int], None]) -> None:
    """Apply ``change(ds, index)`` to each file and save it in place."""
    for i, p in enumerate(files):
        ds = pydicom.dcmread(p)
        change(ds, i)
        ds.save_as(p)


def encode(folder: Path, syntax: str) -> None:
    """Re-encode every file of ``folder`` in place with the external encoder for ``syntax``."""
    tool = ENCODERS[syntax]
    for p in sorted(Path(folder).glob("*.dcm")):
        out = p.with_suffix(".enc")
        cmd = [shutil.which(tool[0], path=_SYSTEM) or tool[0]] + [a.format(i=p, o=out) for a in tool[1:]]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        out.replace(p)


def strip_preamble(path: Path) -> None:
    """Rewrite a file as the bare data set (implicit VR little endian): no preamble, no 'DICM',
    no file meta, as old archives and some exports store them."""
    ds = pydicom.dcmread(path)
    ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    path.write_bytes(buf.getvalue())


def corrupt_pixel_stream(path: Path) -> None:
    """Keep the header, cut the compressed frame to its first 200 bytes (a broken JPEG stream)."""
    ds = pydicom.dcmread(path)
    from pydicom.encaps import encapsulate, generate_fragments

    frag = next(generate_fragments(ds.PixelData))
    ds.PixelData = encapsulate([frag[:200]])
    ds.save_as(path)


def nifti_as_dicom(nifti: Path, out: Path, description: str = "wrapped NIfTI head CT") -> Path:
    """Write a HU NIfTI volume as a CT Image Storage series (one file per axial slice), with the
    geometry SimpleITK reads from its header; for feeding real volumes that come without DICOM."""
    import SimpleITK as sitk
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    img = sitk.ReadImage(str(nifti))
    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    sx, sy, sz = img.GetSpacing()
    study, series, frame = (generate_uid(entropy_srcs=[str(nifti), r]) for r in ("study", "series", "for"))
    out.mkdir(parents=True, exist_ok=True)
    for k in range(arr.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(nifti), str(k)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName, ds.PatientID, ds.StudyDescription = "NIFTI^WRAPPED", nifti.stem[:16], description[:64]
        ds.SeriesNumber, ds.InstanceNumber, ds.SliceThickness = 1, k + 1, f"{sz:g}"
        ds.ImagePositionPatient = [f"{v:.4f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.r_[d[:, 0], d[:, 1]]]
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = np.clip(np.rint(arr[k]), -32768, 32767).astype(np.int16).tobytes()
        ds.save_as(out / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return out


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def make_study(root: Path, seed: int = 41, **opts) -> Path:
    """A synthetic head study (5 mm, 256 matrix) under ``root``; returns its dicom folder."""
    from aspects_research.phantom_dicom import write_case
    from aspects_research.phantoms import PhantomOptions, case_id_for, default_anatomy, make_phantom

    opts.setdefault("matrix", 256)
    kind = opts.pop("kind", "acute")
    thickness = opts.pop("thickness", 5.0)
    name = f"s{seed}-{kind}-{thickness:g}-" + hashlib.sha1(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:6]
    case = root / name
    if not (case / "truth.json").is_file():
        ph = make_phantom(seed, PhantomOptions(kind=kind, thickness=thickness, **opts), default_anatomy())
        tmp = root / (name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        write_case(ph, tmp, case_id_for(seed))
        shutil.rmtree(case, ignore_errors=True)
        (tmp / case_id_for(seed)).rename(case)
        tmp.rmdir()
    return case / "dicom"


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    what: str
    base: object  # "acute", "normal" (synthetic study), "ge" (real series), "none", or phantom options
    build: Callable[[Path, Path], Optional[dict]]  # (input folder, work folder) -> run options
    group: str = "input folder"


def _drop(indices: Callable[[int], Sequence[int]]):
    def build(inp: Path, work: Path):
        files = sorted_files(inp)
        for k in indices(len(files)):
            files[k].unlink()
    return build


def _edit_all(change):
    return lambda inp, work: edit(sorted_files(inp), change)


def _edit_one(k_of_n: Callable[[int], int], change):
    def build(inp: Path, work: Path):
        files = sorted_files(inp)
        edit([files[k_of_n(len(files))]], lambda ds, i: change(ds))
    return build


def _junk(n: int, keep_study: bool):
    def build(inp: Path, work: Path):
        if not keep_study:
            for p in list(inp.iterdir()):
                p.unlink()
        for i in range(n):
            (inp / f"junk{i:05d}.bin").write_bytes(b"\x00" * 64 + str(i).encode())
    return build


def _copy_as_series(inp: Path, folder: str, **attributes: object) -> None:
    """Copy the folder's files into ``inp/folder`` as another series (new series and SOP UIDs),
    each with ``attributes`` set (e.g. a new StudyInstanceUID, a description)."""
    out = inp / folder
    out.mkdir()
    series = generate_uid()
    for p in sorted(inp.glob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for name, value in attributes.items():
            setattr(ds, name, value)
        ds.save_as(out / p.name)


def copy_as_second_study(inp: Path, work: Optional[Path] = None) -> None:
    """Copy the folder's files into ``second/`` as another study (new study, series, SOP UIDs)."""
    _copy_as_series(inp, "second", StudyInstanceUID=generate_uid())


def _beside_a_named_cta(inp: Path, work: Path) -> None:
    """A 1 mm copy of the series named as Siemens protocols name a CTA ('CTA_Head_Neck 1.0 Hv36'),
    no Contrast/Bolus attributes: the thin soft-kernel series the ranking would prefer."""
    _copy_as_series(inp, "cta", SeriesNumber=9, SeriesDescription="CTA_Head_Neck 1.0 Hv36", SliceThickness=1.0,
                    ConvolutionKernel="Hv36")


def as_multiframe(inp: Path, work: Optional[Path] = None) -> None:
    """The series as one Legacy Converted Enhanced CT file (highdicom's converter), as a PACS
    configured to send enhanced objects would."""
    import highdicom as hd

    files = sorted_files(inp)
    ds0 = pydicom.dcmread(files[0], stop_before_pixels=True)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(p) for p in files], series_instance_uid=generate_uid(), series_number=int(ds0.SeriesNumber),
        sop_instance_uid=generate_uid(), instance_number=1)
    for p in files:
        p.unlink()
    enhanced.save_as(inp / "enhanced.dcm")


# Patient positions as a scanner writes them: the same physical image with the pixel rows and / or
# columns stored the other way round and the orientation vectors turned with them (prone: both
# reversed, ImageOrientationPatient -1\\0\\0\\0\\-1\\0; feet first: the columns reversed, so the slice
# normal points to the feet). Every voxel keeps its patient coordinates.
POSITIONS = {"HFP": (True, True), "FFS": (False, True)}  # (rows reversed, columns reversed)


def reposition(inp: Path, position: str) -> None:
    """Rewrite the uncompressed series in ``inp`` in place as acquired in ``position``
    (:data:`POSITIONS`): pixel data, ImageOrientationPatient, ImagePositionPatient and
    PatientPosition, with new series and SOP instance UIDs."""
    flip_rows, flip_cols = POSITIONS[position]
    series = generate_uid()

    def change(ds, i):
        arr = ds.pixel_array
        iop = np.asarray(ds.ImageOrientationPatient, float)
        row_dir, col_dir = iop[:3], iop[3:]  # along a row (column index), down a column (row index)
        ipp = np.asarray(ds.ImagePositionPatient, float)
        d_row, d_col = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
        n_rows, n_cols = arr.shape
        if flip_cols:
            arr, ipp, row_dir = arr[:, ::-1], ipp + (n_cols - 1) * d_col * row_dir, -row_dir
        if flip_rows:
            arr, ipp, col_dir = arr[::-1, :], ipp + (n_rows - 1) * d_row * col_dir, -col_dir
        ds.PixelData = np.ascontiguousarray(arr).tobytes()
        ds.ImageOrientationPatient = [float(round(v, 6)) + 0.0 for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(round(v, 4)) for v in ipp]
        ds.PatientPosition = position
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    edit(sorted_files(inp), change)


def remove_skull_flap(inp: Path, side: str = "left", slab: Sequence[float] = (0.45, 0.9)) -> None:
    """A decompressive hemicraniectomy on the uncompressed series in ``inp`` (in place): on the
    slices between the fractions ``slab`` of the stack (in :func:`sorted_files` order: bottom to
    top on a head-first series) every voxel of ``side``'s half of the head above 120 HU (the bone
    flap, its partial-volume rim) becomes 45 HU, the scalp and dura that lie on the brain where the
    flap was taken off. New series and SOP UIDs."""
    series = generate_uid()
    files = sorted_files(inp)
    n = len(files)

    def change(ds, i):
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if not slab[0] * n <= i < slab[1] * n:
            return
        slope, intercept = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
        raw = ds.pixel_array
        hu = raw.astype(np.float64) * slope + intercept
        # columns run along the row direction: towards the patient's left where its x is positive (LPS)
        to_left = float(ds.ImageOrientationPatient[0]) > 0
        cols = np.arange(hu.shape[1])[None, :]
        half = (cols >= hu.shape[1] // 2) if (side == "left") == to_left else (cols < hu.shape[1] // 2)
        hu[(hu > 120.0) & half] = 45.0
        ds.PixelData = np.round((hu - intercept) / slope).astype(raw.dtype).tobytes()
    edit(files, change)


# A subdural collection's shape: a crescent over the convexity, thickest at the side of the head
# and thinning to nothing SUBDURAL_ARC_DEG to the front and back and towards both ends of its slab.
SUBDURAL_ARC_DEG = 80.0
SUBDURAL_BONE_HU = 300.0  # the skull
# The collection lies against the inner table's partial-volume rim (> SUBDURAL_EDGE_HU within
# SUBDURAL_EDGE_MM of bone), which stays where it is: only the brain beneath is pressed inwards.
SUBDURAL_EDGE_HU = 80.0
SUBDURAL_EDGE_MM = 6.0


def _crescent(hu: np.ndarray, pixel_mm: float, lateral: np.ndarray, thickness_mm: float, blood_hu: float,
              noise_hu: float, rng: np.random.Generator) -> np.ndarray:
    """One axial slice with a collection of ``thickness_mm`` (at its thickest) of ``blood_hu``
    against the inner table towards ``lateral`` (a unit vector in (row, column) pixels), the brain
    beneath it pressed towards the skull's centre by as much (the mass effect). Unchanged where the
    slice has no skull around its centre (fewer than 60 % of the rays from it meet bone)."""
    bone = hu > SUBDURAL_BONE_HU
    labels, n = ndimage.label(bone)
    if n == 0:
        return hu
    skull = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))  # not the head holder
    rows, cols = np.indices(hu.shape, dtype=float)
    c = np.array([rows[skull].mean(), cols[skull].mean()])
    dr, dc = rows - c[0], cols - c[1]
    r = np.hypot(dr, dc)
    theta = np.arctan2(dr, dc)
    # the inner table's radius per direction: its rim's first pixel along rays from the centre (a
    # ray through a gap in the ring, thin bone below 300 HU, finds none: no collection there)
    rim = (hu > SUBDURAL_EDGE_HU) & (ndimage.distance_transform_edt(~bone) * pixel_mm <= SUBDURAL_EDGE_MM)
    angles = np.linspace(-np.pi, np.pi, 721)
    steps = np.arange(2.0, max(hu.shape), 0.5)
    rr = c[0] + np.sin(angles)[:, None] * steps[None, :]
    cc = c[1] + np.cos(angles)[:, None] * steps[None, :]
    valid = (rr >= 0) & (rr <= hu.shape[0] - 1) & (cc >= 0) & (cc <= hu.shape[1] - 1)
    hit = np.zeros(rr.shape, bool)
    hit[valid] = rim[np.round(rr[valid]).astype(int), np.round(cc[valid]).astype(int)]
    if hit.any(axis=1).mean() < 0.6 or rim[int(round(c[0])), int(round(c[1]))]:
        return hu  # no skull around the centre on this slice
    radius = np.where(hit.any(axis=1), steps[np.argmax(hit, axis=1)], 0.0)
    big_r = radius[np.round((theta + np.pi) / (2 * np.pi) * (angles.size - 1)).astype(int)]  # the pixel's ray
    inside = r < big_r
    off = np.degrees(np.arccos(np.clip((dr * lateral[0] + dc * lateral[1]) / np.maximum(r, 1e-6), -1, 1)))
    t = thickness_mm / pixel_mm * np.clip(1.0 - (off / SUBDURAL_ARC_DEG) ** 2, 0.0, None)
    t = np.where(inside & (big_r > 0), t, 0.0)
    where = (t > 0.25) & (r < big_r)
    # the brain beneath is pressed inwards: pixel at r shows what lay at r * R / (R - t)
    scale = np.where(where, big_r / np.maximum(big_r - t, 1.0), 1.0)
    pressed = ndimage.map_coordinates(hu, [c[0] + dr * scale, c[1] + dc * scale], order=1, mode="nearest")
    share = np.clip(r - (big_r - t) + 0.5, 0.0, 1.0)  # the collection's share of a pixel: one-pixel soft edge
    blood = blood_hu + rng.normal(0.0, noise_hu, hu.shape)
    out = hu.copy()
    out[where] = (share * blood + (1.0 - share) * pressed)[where]
    return out


def add_subdural(inp: Path, side: str = "left", thickness_mm: float = 8.0, blood_hu: float = 65.0,
                 slab: Sequence[float] = (0.35, 0.85), seed: int = 0) -> None:
    """A subdural collection on the uncompressed axial series in ``inp`` (in place): on the slices
    between the fractions ``slab`` of the stack (:func:`sorted_files` order) a crescent of
    ``blood_hu`` (acute blood 50-80 HU, chronic 10-25) against the inner table of ``side``, its
    thickness ``thickness_mm`` at the middle of the slab and the side of the head
    (:data:`SUBDURAL_ARC_DEG`), the brain beneath pressed inwards, the scanner's noise on it (the
    slice's own, measured on brain tissue). New series and SOP UIDs."""
    series = generate_uid()
    files = sorted_files(inp)
    n = len(files)
    rng = np.random.default_rng(seed)

    def change(ds, i):
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        lo, hi = slab[0] * n, slab[1] * n
        if not lo <= i < hi:
            return
        taper = max(0.0, float(np.sin(np.pi * min(1.0, (i + 0.5 - lo) / (hi - lo))))) ** 0.5  # thickest mid-slab
        slope, intercept = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
        raw = ds.pixel_array
        hu = raw.astype(np.float64) * slope + intercept
        to_left = float(ds.ImageOrientationPatient[0]) > 0  # columns run towards the patient's left (LPS)
        lateral = np.array([0.0, 1.0 if (side == "left") == to_left else -1.0])
        tissue = (hu > 15) & (hu < 50)
        resid = (hu - ndimage.uniform_filter(hu, 3))[tissue]
        noise = float(1.4826 * np.median(np.abs(resid - np.median(resid)))) * 1.5 if resid.size > 100 else 4.0
        hu = _crescent(hu, float(ds.PixelSpacing[1]), lateral, thickness_mm * taper, blood_hu, noise, rng)
        lo_raw, hi_raw = np.iinfo(raw.dtype).min, np.iinfo(raw.dtype).max
        ds.PixelData = np.clip(np.round((hu - intercept) / slope), lo_raw, hi_raw).astype(raw.dtype).tobytes()
    edit(files, change)


def _repositioned(position: str):
    return lambda inp, work: reposition(inp, position)


def _interleave(inp: Path, work: Path):
    """Every other slice becomes a second acquisition shifted 8 mm sideways (patient moved)."""
    def change(ds, i):
        if i % 2:
            ds.AcquisitionNumber = 2
            ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 8.0] + list(ds.ImagePositionPatient[1:])
    edit(sorted_files(inp), change)


def _duplicate_uid(inp: Path, work: Path):
    files = sorted_files(inp)
    uid = pydicom.dcmread(files[10], stop_before_pixels=True).SOPInstanceUID
    edit([files[11]], lambda ds, i: (setattr(ds, "SOPInstanceUID", uid), setattr(ds.file_meta, "MediaStorageSOPInstanceUID", uid)))


def _identical_copy(inp: Path, work: Path):
    files = sorted_files(inp)
    (inp / "copies").mkdir()
    for p in files[5:8]:
        shutil.copy2(p, inp / "copies" / p.name)


def _no_pixels(inp: Path, work: Path):
    files = sorted_files(inp)
    edit([files[len(files) // 2]], lambda ds, i: delattr(ds, "PixelData"))


def _truncate(inp: Path, work: Path):
    p = sorted_files(inp)[len(sorted_files(inp)) // 2]
    p.write_bytes(p.read_bytes()[:-5000])


def _no_preamble(inp: Path, work: Path):
    for p in sorted_files(inp):
        strip_preamble(p)


def relabel_transfer_syntax(folder: Path, uid: str) -> None:
    """Declare transfer syntax ``uid`` (e.g. a vendor's private one) in every file's meta; the
    data set bytes stay as they are. pydicom will not write an unknown syntax, so the meta group
    is rewritten in front of the original data set bytes."""
    from pydicom.filewriter import write_file_meta_info

    for p in sorted_files(folder):
        raw = p.read_bytes()
        meta = pydicom.dcmread(p, stop_before_pixels=True).file_meta
        body = 132 + 12 + int(meta.FileMetaInformationGroupLength)  # preamble, 'DICM', (0002,0000), group
        meta.TransferSyntaxUID = uid
        buf = DicomBytesIO()
        write_file_meta_info(buf, meta, enforce_standard=True)
        p.write_bytes(raw[:132] + buf.getvalue() + raw[body:])


def _unknown_syntax(inp: Path, work: Path):
    relabel_transfer_syntax(inp, PRIVATE_SYNTAX)


def _corrupt_jpeg(inp: Path, work: Path):
    encode(inp, "jpeg-lossless-sv1")
    corrupt_pixel_stream(sorted_files(inp)[12])


def _keep(fraction_lo: float, fraction_hi: float):
    """Keep the slices between two fractions of the series (0 = lowest slice)."""
    def build(inp: Path, work: Path):
        files = sorted_files(inp)
        lo, hi = int(round(fraction_lo * len(files))), int(round(fraction_hi * len(files)))
        for k, p in enumerate(files):
            if not lo <= k < hi:
                p.unlink()
    return build


def _localizers(inp: Path, work: Path):
    _keep(0.4, 0.45)(inp, work)
    edit(sorted_files(inp), lambda ds, k: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))


def _two_part(inp: Path, work: Path):
    """Upper half: every other slice removed (steps change from the slice step to twice it)."""
    files = sorted_files(inp)
    for k, p in enumerate(files):
        if k > len(files) // 2 and k % 2:
            p.unlink()


def _long_description(inp: Path, work: Path):
    edit(sorted_files(inp), lambda ds, i: setattr(ds, "StudyDescription", "CT HEAD WITHOUT CONTRAST " * 20))


def _output_is_file(inp: Path, work: Path):
    (work / "out").write_text("a file where the output folder should be")
    return {}


def _output_under_file(inp: Path, work: Path):
    (work / "file").write_text("x")
    return {"out": work / "file" / "out"}


def _output_inside_input(inp: Path, work: Path):
    return {"out": inp / "results"}


def _output_locked(inp: Path, work: Path):
    return {"hold_lock": True}


def shear_positions(folder: Path, deg: float) -> None:
    """Shift every slice origin along y by tan(deg) x its height: the stack of a gantry tilt."""
    files = sorted_files(folder)
    z0 = float(pydicom.dcmread(files[0], stop_before_pixels=True).ImagePositionPatient[2])

    def change(ds, i):
        p = [float(v) for v in ds.ImagePositionPatient]
        p[1] += np.tan(np.radians(deg)) * (p[2] - z0)
        ds.ImagePositionPatient = p
    edit(files, change)


def _shear(deg: float):
    return lambda inp, work: shear_positions(inp, deg)


def _signal(sig: int):
    return lambda inp, work: {"signal": sig}


def _earlier_result(inp: Path, work: Path):
    """An earlier result in the output folder, then a run that fails (MR only)."""
    out = work / "out"
    (out / "dicom").mkdir(parents=True)
    (out / "dicom" / "seg.dcm").write_bytes(b"old")
    (out / "aspects.json").write_text(json.dumps({"outputs": {"seg": "dicom/seg.dcm"}}))
    edit(sorted_files(inp), lambda ds, i: (setattr(ds, "Modality", "MR"),
                                           setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4")))
    return {"expect_gone": ["aspects.json", "dicom/seg.dcm"]}


def _nothing(inp: Path, work: Path):
    return None


def _encoded(syntax: str):
    return lambda inp, work: encode(inp, syntax)


CASES: List[Case] = [
    Case("missing_input", "input folder does not exist", "none", lambda i, w: {"input": w / "nope"}),
    Case("input_is_file", "input path is a file", "none", lambda i, w: (w / "f.dcm").write_text("x") and {"input": w / "f.dcm"}),
    Case("empty_folder", "empty input folder", "none", _nothing),
    Case("junk_only", "2000 non-DICOM files only", "none", _junk(2000, keep_study=False)),
    Case("output_inside_input", "output folder inside the input folder", "normal", _output_inside_input, "output folder"),
    Case("output_is_file", "output path is an existing file", "normal", _output_is_file, "output folder"),
    Case("output_under_file", "output path below a file", "normal", _output_under_file, "output folder"),
    Case("output_locked", "another run holds the output folder", "normal", _output_locked, "output folder"),
    Case("earlier_result_replaced", "output folder holds an earlier result; the rerun fails", "normal",
         _earlier_result, "output folder"),
    Case("mr_only", "MR instead of CT", "normal", _edit_all(lambda ds, i: (setattr(ds, "Modality", "MR"), setattr(
        ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4"))), "series"),
    Case("contrast_only", "contrast-enhanced CT (ContrastBolusAgent)", "normal",
         _edit_all(lambda ds, i: setattr(ds, "ContrastBolusAgent", "Iohexol")), "series"),
    Case("localizers_only", "two localizer images", "normal", _localizers, "series"),
    Case("multiframe_ct", "the series as one multi-frame (Legacy Converted Enhanced CT) file", "normal", as_multiframe,
         "series"),
    Case("reformats_only", "ImageType DERIVED/SECONDARY/REFORMATTED", "normal",
         _edit_all(lambda ds, i: setattr(ds, "ImageType", ["DERIVED", "SECONDARY", "REFORMATTED"])), "series"),
    Case("too_thick", "10 mm slices", "normal", _edit_all(lambda ds, i: setattr(ds, "SliceThickness", "10")), "series"),
    Case("too_few_slices", "only 4 slices", "normal", _keep(0.4, 0.5), "series"),
    Case("two_studies", "two studies in one folder", "normal", copy_as_second_study, "series"),
    Case("missing_slice", "one slice missing in the middle", "normal", _drop(lambda n: [n // 2]), "series"),
    Case("missing_slices", "three adjacent slices missing", "normal", _drop(lambda n: [n // 2, n // 2 + 1, n // 2 + 2]), "series"),
    Case("duplicate_uid", "one SOPInstanceUID on two different slices", "normal", _duplicate_uid, "series"),
    Case("interleaved", "two interleaved acquisitions, the second shifted 8 mm", "normal", _interleave, "series"),
    Case("no_position", "one slice without ImagePositionPatient", "normal",
         _edit_one(lambda n: n // 2, lambda ds: delattr(ds, "ImagePositionPatient")), "series"),
    Case("pixel_spacing_zero", "one slice with PixelSpacing 0\\0", "normal",
         _edit_one(lambda n: n // 3, lambda ds: setattr(ds, "PixelSpacing", [0, 0])), "series"),
    Case("rows_differ", "one slice with another matrix size (Rows)", "normal",
         _edit_one(lambda n: n // 3, lambda ds: setattr(ds, "Rows", 255)), "series"),
    Case("too_tilted", "slice positions sheared as a gantry tilt of 40 degrees", "normal", _shear(40.0), "series"),
    Case("no_pixel_data", "one slice without Pixel Data", "normal", _no_pixels, "pixels"),
    Case("truncated_file", "one file cut short (5000 bytes missing)", "normal", _truncate, "pixels"),
    Case("unknown_syntax", f"a vendor's private transfer syntax ({PRIVATE_SYNTAX})", "normal", _unknown_syntax, "pixels"),
    Case("corrupt_jpeg", "JPEG Lossless series, one slice's stream cut to 200 bytes", "normal", _corrupt_jpeg, "pixels"),
    Case("signal_term", "SIGTERM 15 s into a run", "normal", _signal(signal.SIGTERM), "interrupted"),
    Case("signal_int", "SIGINT (Ctrl+C) 15 s into a run", "normal", _signal(signal.SIGINT), "interrupted"),
    Case("half_head", "lower half of the head only", "normal", _keep(0.0, 0.5), "coverage"),
    Case("top_cut", "the top 40 % of the head not scanned", "normal", _keep(0.0, 0.6), "coverage"),
    Case("skull_cap", "upper quarter of the head only", "normal", _keep(0.75, 1.0), "coverage"),
    Case("baseline", "the unchanged synthetic study (acute left MCA infarct)", "acute", _nothing, "accepted"),
    *[Case(f"syntax_{s}", f"every slice encoded as {s} ({ENCODERS[s][0]})", "acute", _encoded(s), "accepted")
      for s in ENCODERS],
    Case("no_preamble", "files without the 128-byte preamble and file meta", "acute", _no_preamble, "accepted"),
    Case("beside_named_cta", "a 1 mm copy named 'CTA_Head_Neck 1.0 Hv36' beside the 5 mm series (no contrast attributes)",
         "acute", _beside_a_named_cta, "accepted"),
    Case("identical_copies", "three byte-identical copies of slices in a sub-folder", "acute", _identical_copy, "accepted"),
    Case("junk_mixed", "the study plus 2000 non-DICOM files", "acute", _junk(2000, keep_study=True), "accepted"),
    Case("long_description", "a 500-character StudyDescription", "acute", _long_description, "accepted"),
    Case("tilt_plus_15", "synthetic gantry tilt +15 degrees (acute left MCA infarct)",
         dict(seed=44, kind="acute", tilt_deg=15.0, hu_drop=10.0, side="left", pattern="whole_mca"), _nothing, "accepted"),
    Case("tilt_minus_20_two_part", "synthetic tilt -20 degrees, 2.5 mm slices, above mid-head every other one "
         "removed (2.5 mm then 5 mm steps)", dict(seed=45, kind="acute", tilt_deg=-20.0, hu_drop=10.0, side="right",
                                                  pattern="whole_mca", thickness=2.5), _two_part, "accepted"),
    Case("prone", "the same study as scanned prone (HFP: rows and columns stored the other way round)", "acute",
         _repositioned("HFP"), "accepted"),
    Case("feet_first", "the same study as scanned feet first (FFS: columns reversed, slice normal to the feet)",
         "acute", _repositioned("FFS"), "accepted"),
    Case("craniectomy", "a normal head without its left skull flap (hemicraniectomy: the bone of the upper half of "
         "the left side made scalp, 45 HU)", "normal", lambda i, w: remove_skull_flap(i, "left"), "accepted"),
    Case("ge_real", "real GE series: 18.5 deg tilt, 4 mm and 7 mm slices (28 images)", "ge", _nothing, "accepted"),
    Case("invesalius_real", "real head CT (InVesalius example, 256 matrix, 1.5 mm) wrapped as DICOM", "invesalius",
         _nothing, "accepted"),
]
BASES = {"normal": dict(seed=41, kind="normal"),
         "acute": dict(seed=42, kind="acute", hu_drop=10.0, side="left", pattern="whole_mca")}


# ----------------------------------------------------------------------------- running
def _base_folder(base, studies: Path) -> Optional[Path]:
    if base == "none":
        return None
    if base == "ge":
        return GE_SERIES
    if base == "invesalius":
        folder = studies / "invesalius_dicom"
        if not folder.is_dir():
            nifti_as_dicom(INVESALIUS, folder.with_suffix(".partial"), "InVesalius example head CT (GPL-2)")
            folder.with_suffix(".partial").rename(folder)
        return folder
    opts = dict(BASES[base]) if isinstance(base, str) else dict(base)
    return make_study(studies, **opts)


def _wait_for_text(path: Path, text: str, timeout: float, proc: subprocess.Popen) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def _dciodvfy_errors(out: Path) -> Optional[int]:
    tool = shutil.which("dciodvfy")
    if tool is None or not (out / "dicom").is_dir():
        return None
    n = 0
    for f in sorted((out / "dicom").glob("*.dcm")):
        r = subprocess.run([tool, str(f)], capture_output=True, text=True, timeout=120)
        n += sum(line.startswith("Error") for line in (r.stdout + r.stderr).splitlines())
    return n


def _outcome(out: Path) -> str:
    """ASPECTS, score and flags of a result, in words."""
    d = json.loads((out / "aspects.json").read_text())
    a = d["aspects"]
    show = lambda v: "n/a" if v is None else str(v)  # noqa: E731
    text = f"ASPECTS R {show(a['right'])} / L {show(a['left'])}, score {show(d['score'])}"
    flags = d.get("flags") or []
    missing = (d.get("flag_details") or {}).get("incomplete_coverage", {}).get("regions") or []
    if missing:
        text += f"; not assessable: {', '.join(missing)}"
    text += f"; flags: {', '.join(flags) or 'none'}"
    # when the study held series the selector skipped, which one was analysed
    log = (out / "app.log").read_text(errors="replace").splitlines() if (out / "app.log").is_file() else []
    picks = [ln.split("series selection: ", 1)[1] for ln in log if "series selection: " in ln]
    chosen = [p.split(": chosen", 1)[0] for p in picks if ": chosen" in p]
    if chosen and any(": skipped" in p for p in picks):
        text += f"; analysed {chosen[0]}, skipped {sum(': skipped' in p for p in picks)} other series"
    return text


def run_case(case: Case, work: Path, studies: Path, models: Path, timeout_s: float = 900.0) -> dict:
    """Build one case under ``work/<name>`` and run the app on it; returns the table row."""
    cdir = work / case.name
    shutil.rmtree(cdir, ignore_errors=True)
    cdir.mkdir(parents=True)
    inp = cdir / "input"
    base = _base_folder(case.base, studies)
    if base is None:
        inp.mkdir()
    else:
        shutil.copytree(base, inp)
    opts = case.build(inp, cdir)
    opts = opts if isinstance(opts, dict) else {}
    in_dir, out = Path(opts.get("input", inp)), Path(opts.get("out", cdir / "out"))
    before = tree_digest(in_dir) if in_dir.is_dir() else None
    lock_fd = None
    if opts.get("hold_lock"):
        out.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(out / ".aspects.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        os.pwrite(lock_fd, b"4242\n", 0)
    cmd = [sys.executable, str(ROOT / "app.py"), "-i", str(in_dir), "-o", str(out), "-m", str(models)]
    t0 = time.monotonic()
    with open(cdir / "console.log", "wb") as console:
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, cwd=ROOT)
        if opts.get("signal"):
            _wait_for_text(out / "app.log", "preprocessing:", 300, proc)
            time.sleep(5)
            proc.send_signal(opts["signal"])
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    wall = time.monotonic() - t0
    if lock_fd is not None:
        os.close(lock_fd)
    text = (cdir / "console.log").read_text(errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("error[")]
    row = {"name": case.name, "group": case.group, "what": case.what, "exit": code, "wall_s": round(wall, 1),
           "traceback": "Traceback" in text,
           "input_unchanged": None if before is None else tree_digest(in_dir) == before}
    if code == 0 and (out / "aspects.json").is_file():
        row["message"] = _outcome(out)
        row["dciodvfy_errors"] = _dciodvfy_errors(out)
        row["score"] = json.loads((out / "aspects.json").read_text())["score"]
    else:
        row["message"] = errors[-1] if errors else (text.strip().splitlines() or [""])[-1][:300]
    skipped = [ln for ln in text.splitlines() if "file(s) that are not usable" in ln]
    if skipped:
        row["console_skip_lines"] = len(skipped)
    if out.is_dir():
        row["error_json"] = json.loads((out / "error.json").read_text()) if (out / "error.json").is_file() else None
        row["partial_left"] = bool(list(out.glob(".aspects-partial-*")))
        for rel in opts.get("expect_gone", []):
            row.setdefault("earlier_result_removed", True)
            row["earlier_result_removed"] &= not (out / rel).exists()
    return row


# ----------------------------------------------------------------------------- listener cases
def listener_rows(work: Path, studies: Path) -> List[dict]:
    """The listener under three faults: a JPEG Lossless C-STORE, a C-STORE without its data set,
    a second listener on the same spool."""
    import yaml
    from io import BytesIO

    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.sop_class import CTImageStorage

    from aspects_research.dicom_servers import echo, free_port, listener_settings, wait_for

    ldir = work / "listener"
    shutil.rmtree(ldir, ignore_errors=True)
    ldir.mkdir(parents=True)
    port = free_port()
    settings = listener_settings(ldir / "spool", port, None, quiet_time_s=3600)
    (ldir / "listener.yaml").write_text(yaml.safe_dump(settings))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(ldir / "listener.log", "wb")
    first = subprocess.Popen([sys.executable, "-m", "listener", "--config", str(ldir / "listener.yaml")],
                             stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    rows = []
    try:
        wait_for(lambda: echo(port, "ASPECTS", "TESTSCU") == 0, 60, "the listener")
        jl = ldir / "jpeg"
        shutil.copytree(make_study(studies, **BASES["normal"]), jl)
        encode(jl, "jpeg-lossless-sv1")
        sent = sorted(jl.glob("*.dcm"))[:3]
        r = subprocess.run([shutil.which("storescu", path=_SYSTEM), "-xs", "-aet", "TESTSCU", "-aec", "ASPECTS",
                            "127.0.0.1", str(port), *map(str, sent)], capture_output=True, text=True, timeout=120)
        stored = sorted((ldir / "spool").glob("*/incoming/*.dcm"))
        same = len(stored) == 3 and all(str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
                                        for p in stored)
        rows.append({"name": "listener_jpeg_lossless", "group": "listener", "what": "C-STORE of 3 JPEG Lossless (SV1) CT images (dcmtk storescu)",
                     "exit": r.returncode, "message": f"{len(stored)} stored, transfer syntax kept: {same}"})
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(CTImageStorage)
        ae.dimse_timeout = 20
        assoc = ae.associate("127.0.0.1", port, ae_title="ASPECTS")
        req = C_STORE()
        req.MessageID, req.Priority = 1, 2
        req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = CTImageStorage, generate_uid()
        req.DataSet = BytesIO(b"")
        cx = assoc._get_valid_context(CTImageStorage, "", "scu")
        assoc._reactor_checkpoint.clear()  # as pynetdicom's send_c_echo does: its reactor leaves the reply to us
        while not assoc._is_paused:
            time.sleep(0.001)
        t = time.monotonic()
        assoc.dimse.send_msg(req, cx.context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
        took = time.monotonic() - t
        assoc._reactor_checkpoint.set()
        assoc.release()
        status = f"0x{rsp.Status:04X}" if rsp is not None else "no answer"
        rows.append({"name": "listener_empty_dataset", "group": "listener", "what": "C-STORE request whose data set never comes (pynetdicom)",
                     "exit": None, "message": f"answered {status} after {took:.1f} s"})
        before = tree_digest(ldir / "spool")
        second = subprocess.run([sys.executable, "-m", "listener", "--config", str(ldir / "listener.yaml")],
                                capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error[")]
        rows.append({"name": "listener_second_on_spool", "group": "listener", "what": "a second listener on the same spool",
                     "exit": second.returncode, "message": lines[-1] if lines else second.stderr[-200:],
                     "input_unchanged": tree_digest(ldir / "spool") == before})
    finally:
        first.terminate()
        first.wait(30)
        log.close()
    return rows


# ----------------------------------------------------------------------------- the doc
def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[dict], header: Dict[str, str]) -> str:
    base = next((r for r in rows if r["name"] == "baseline"), None)
    lines = [
        "# Robustness: every bad or odd input tried",
        "",
        "Made by `aspects-robustness` (do not edit by hand): it builds each case from a synthetic 5 mm "
        "head study or the real GE series (`../shared/data/real/ge_tilted_head_dicom`), runs "
        "`python app.py -i IN -o OUT -m models` as a user does and records what happened. Exit codes: README "
        "\"Bad input\".",
        "",
        f"- date: {header['date']}; machine: {header['machine']}",
        f"- command: `{header['command']}`; code: {header['git']}",
        *([f"- cases rerun since: {header['rerun']}"] if header.get("rerun") else []),
        "- columns: exit code; the one-line error (`error[<code>]: ...`) or, for a result, ASPECTS / score / "
        "flags; input = input folder byte-identical after the run; tb = a Python traceback reached the console "
        "(must be no); dciodvfy = errors in the DICOM outputs.",
        "",
    ]
    groups: Dict[str, List[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for group, items in groups.items():
        lines += [f"## {group}", "", "| case | what was done | exit | message or result | input | tb | dciodvfy |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in items:
            msg = r["message"]
            if r.get("score") is not None and base and base is not r and r["name"].startswith("syntax_"):
                msg += f" (baseline score {base.get('score')}: {'same' if r['score'] == base.get('score') else 'DIFFERENT'})"
            if r.get("error_json") and r["error_json"].get("interrupted"):
                msg += "; error.json: interrupted"
            if "earlier_result_removed" in r:
                msg += f"; earlier result removed: {'yes' if r['earlier_result_removed'] else 'NO'}"
            if r.get("console_skip_lines"):
                msg += f"; console lines about skipped files: {r['console_skip_lines']}"
            if r.get("partial_left"):
                msg += "; PARTIAL FOLDER LEFT"
            unchanged = {None: "-", True: "yes", False: "CHANGED"}[r.get("input_unchanged")]
            dv = r.get("dciodvfy_errors")
            lines.append(f"| {r['name']} | {_cell(r['what'])} | {'' if r['exit'] is None else r['exit']} | {_cell(msg)} | "
                         f"{unchanged} | {'YES' if r.get('traceback') else 'no'} | {'' if dv is None else dv} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "robustness", help="scratch folder for the cases")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "robustness.md")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--only", nargs="*", help="run only these cases; their rows replace those of the last full "
                                              "run in --work and the doc is written again")
    ap.add_argument("--no-listener", action="store_true", help="skip the listener cases")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    studies = args.work / "studies"
    studies.mkdir(exist_ok=True)
    header = {"date": dt.date.today().isoformat(), "machine": machine_line(machine_info()),
              "command": command_line(sys.argv if argv is None else ["aspects-robustness", *argv]),
              "git": git_describe()}
    cases = [c for c in CASES if not args.only or c.name in args.only]
    rows = []
    for i, case in enumerate(cases, 1):
        row = run_case(case, args.work, studies, args.models)
        rows.append(row)
        print(f"[{i}/{len(cases)}] {case.name}: exit {row['exit']} in {row['wall_s']} s: {row['message'][:150]}", flush=True)
    if not args.no_listener and not args.only:
        for row in listener_rows(args.work, studies):
            rows.append(row)
            print(f"[listener] {row['name']}: {row['message']}", flush=True)
    saved = args.work / "rows.json"
    if args.only and saved.is_file():  # rerun of some cases: they replace their rows in the last full run
        earlier = json.loads(saved.read_text())
        new = {r["name"]: r for r in rows}
        header = {**earlier[0].get("_header", header), "rerun": f"{', '.join(args.only)} rerun on {header['date']} "
                  f"(`{header['command']}`, code {header['git']}, load {header['machine'].split('load average at start ')[-1]})"}
        known = {r["name"] for r in earlier}
        rows = [new.get(r["name"], r) for r in earlier] + [r for r in rows if r["name"] not in known]
    elif args.only:
        print("no earlier full run in --work: the doc is not written")
        return 0
    rows[0]["_header"] = header
    saved.write_text(json.dumps(rows, indent=1))
    args.doc.write_text(to_markdown(rows, header) + "\n")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
