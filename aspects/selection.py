"""Pick the head NCCT series of a study, and check that it can be used as one volume.

Rules live in ``config/series_selection.json``; every decision is logged with its reason so
a PACS administrator can see why a series was (not) chosen.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from aspects.dicom_geometry import SliceGeometry, slice_normal, slice_positions, sort_slices
from aspects.errors import EXIT_BAD_SERIES, EXIT_MULTIPLE_STUDIES, EXIT_NO_SERIES, InputError

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "config" / "series_selection.json"


def load_rules(path: Optional[Path] = None) -> dict:
    with open(path or DEFAULT_RULES) as f:
        return json.load(f)


@dataclass
class Candidate:
    """One series of the study with what selection needs to know about it."""

    series_uid: str
    datasets: List[Dataset]
    description: str
    number: int
    thickness_mm: float
    kernel: str
    rejected: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"series {self.number} '{self.description}' ({len(self.datasets)} images)"


def _text(ds: Dataset, name: str) -> str:
    value = ds.get(name, "")
    if isinstance(value, (list, tuple)) or value.__class__.__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value or "")


def _thicknesses(datasets: Sequence[Dataset]) -> np.ndarray:
    """SliceThickness of every image (else the median step between positions, else nan)."""
    values = []
    for ds in datasets:
        try:
            values.append(float(ds.get("SliceThickness") or "nan"))
        except (TypeError, ValueError):
            values.append(float("nan"))
    t = np.asarray(values)
    if np.isfinite(t).any():
        return t[np.isfinite(t)]
    if len(datasets) > 1 and all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for ds in datasets):
        return np.array([float(np.median(np.diff(np.sort(slice_positions(datasets)))))])
    return np.array([float("nan")])


def _sop_name(uid: str) -> str:
    """The SOP class's name as the DICOM dictionary gives it (else 'unknown SOP class')."""
    name = UID(uid).name if uid else ""
    return name if name and name != uid else "unknown SOP class"


def contrast_in_description(description: str, rules: dict) -> bool:
    """The series description says contrast was given ('C+', 'post contrast', 'with contrast'),
    not that it was not ('w/o contrast', 'non-contrast')."""
    return bool(re.search(rules["description_contrast_regex"], description or "")
                and not re.search(rules["description_noncontrast_regex"], description or ""))


def contrast_attribute(ds: Dataset, rules: dict) -> Optional[str]:
    """'Attribute = value' of the first Contrast/Bolus attribute with a value, or None. Some
    scanners and archives write 'NONE' or 'NO' into ContrastBolusAgent of a plain scan: such
    values mean no contrast."""
    none = {v.upper() for v in rules.get("contrast_none_values", [])}
    for attr in rules["contrast_attributes"]:
        value = ds.get(attr)
        if isinstance(value, DicomSequence):  # coded agent: its items' meanings
            text = ", ".join(str(item.get("CodeMeaning", "") or "item") for item in value)
        else:
            text = _text(ds, attr).strip()
        if text and text.upper() not in none:
            return f"{attr} = {text}"
    return None


def describe(series_uid: str, datasets: Sequence[Dataset], rules: dict) -> Candidate:
    """Build a candidate and record every rule it breaks."""
    ds0 = datasets[0]
    c = Candidate(
        series_uid=series_uid,
        datasets=list(datasets),
        description=_text(ds0, "SeriesDescription"),
        number=int(ds0.get("SeriesNumber", 0) or 0),
        thickness_mm=float(np.median(_thicknesses(datasets))),
        kernel=_text(ds0, "ConvolutionKernel"),
    )
    modality = _text(ds0, "Modality")
    if modality != rules["modality"]:
        c.rejected.append(f"modality {modality or 'unknown'}, not {rules['modality']}")
        return c
    sop_class, frames = str(ds0.get("SOPClassUID", "")), int(ds0.get("NumberOfFrames", 1) or 1)
    if sop_class in rules["multiframe_sop_class_uids"] or frames > 1:
        # Enhanced / Legacy Converted Enhanced CT: one file holds every slice, placed by per-frame
        # functional groups; the outputs reference single-frame CT Image Storage instances.
        c.rejected.append(f"multi-frame CT ({_sop_name(sop_class)}, {frames} frames "
                          "in one file) is not supported: send the series as single-frame CT Image Storage")
        return c
    if sop_class not in rules["sop_class_uids"]:
        c.rejected.append(f"SOP class {sop_class or '?'} ({_sop_name(sop_class)}) is not a CT image")
        return c
    image_type = [t.strip().upper() for t in _text(ds0, "ImageType").split("\\") if t.strip()]
    if image_type[:1] == ["DERIVED"] and str(ds0.get("LossyImageCompression", "")) == "01":
        # Lossy compression alone makes an original image DERIVED (PS3.3 C.7.6.1.1.2): an archive
        # that stores JPEG 2000 lossy still holds the scanner's axial series.
        image_type[0] = "ORIGINAL"
        c.notes.append("lossy-compressed original (ImageType DERIVED, LossyImageCompression 01)")
    missing = [t for t in rules["image_type_required"] if t not in image_type]
    if missing:
        c.rejected.append(f"ImageType {'/'.join(image_type) or 'empty'} is not {'/'.join(rules['image_type_required'])}")
    banned = [t for t in rules["image_type_excluded"] if t in image_type]
    if banned:
        c.rejected.append(f"ImageType marks it as {banned[0].lower()}")
    if re.search(rules["description_excluded_regex"], c.description or ""):
        c.rejected.append(f"description '{c.description}' is excluded")
    elif contrast_in_description(c.description, rules):
        c.rejected.append(f"contrast-enhanced (description '{c.description}')")
    agent = contrast_attribute(ds0, rules)
    if agent:
        c.rejected.append(f"contrast-enhanced ({agent})")
    placed = [ds for ds in datasets if ds.get("ImageOrientationPatient") and ds.get("ImagePositionPatient")]
    if not placed:  # one image without them is a broken series (geometry_problem names it)
        c.rejected.append("no image position/orientation (not a cross-sectional image)")
        return c
    try:
        deviation = float(np.degrees(np.arccos(min(1.0, abs(slice_normal(placed[0])[2])))))
    except (TypeError, ValueError):
        deviation = float("nan")
    if not deviation <= rules["max_normal_deviation_deg"]:
        c.rejected.append(f"not axial (slice normal {deviation:.0f} deg from the body axis)")
    if len(datasets) < rules["min_slices"]:
        c.rejected.append(f"only {len(datasets)} images (a localizer or partial series)")
    thickest = float(np.max(_thicknesses(datasets)))
    if not np.isfinite(thickest) or thickest > rules["max_thickness_mm"] + 1e-6:
        c.rejected.append(f"slice thickness {thickest:g} mm > {rules['max_thickness_mm']:g} mm")
    return c


def _is_soft(c: Candidate, rules: dict) -> bool:
    return not re.search(rules["sharp_kernel_regex"], c.kernel or "")


def rank_key(c: Candidate, rules: dict) -> Tuple:
    """Sort key, best first: preferred thin soft-tissue series, else the thinnest <= 5 mm.

    Ties go to the soft kernel, then the larger coverage (more images), then the lower series
    number and UID, so the choice never depends on file order.
    """
    lo, hi = rules["preferred_thickness_mm"]
    preferred = lo - 1e-6 <= c.thickness_mm <= hi + 1e-6 and _is_soft(c, rules)
    return (not preferred, c.thickness_mm, not _is_soft(c, rules), -len(c.datasets), c.number, c.series_uid)


def _name(ds: Dataset) -> str:
    """How a message names one image: its file (else its instance number)."""
    f = getattr(ds, "filename", None)
    if isinstance(f, str) and f:
        return Path(f).name
    return f"instance {ds.get('InstanceNumber', '?')}"


def _attribute_problem(datasets: Sequence[Dataset]) -> Optional[str]:
    """An image without the attributes that place it in space, or with impossible values."""
    for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        lacking = [ds for ds in datasets if ds.get(name) in (None, "")]
        if lacking:
            more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
            return f"image {_name(lacking[0])}{more} has no {name}; it cannot be placed in the volume"
    for ds in datasets:
        try:
            spacing = [float(v) for v in ds.PixelSpacing]
            ipp = [float(v) for v in ds.ImagePositionPatient]
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        except (TypeError, ValueError) as exc:
            return f"image {_name(ds)} has an unreadable position/orientation/spacing ({exc})"
        if len(spacing) != 2 or not all(np.isfinite(v) and v > 0 for v in spacing):
            return f"image {_name(ds)} has PixelSpacing {'/'.join(f'{v:g}' for v in spacing)}; it must be two values > 0 mm"
        if len(ipp) != 3 or not np.all(np.isfinite(ipp)):
            return f"image {_name(ds)} has an invalid ImagePositionPatient {ipp}"
        if iop.size != 6 or np.linalg.norm(np.cross(iop[:3], iop[3:])) < 0.5:
            return f"image {_name(ds)} has an invalid ImageOrientationPatient {list(iop)}"
        if int(ds.Rows) <= 0 or int(ds.Columns) <= 0:
            return f"image {_name(ds)} has {ds.Rows} x {ds.Columns} pixels"
    return None


def _acquisitions(datasets: Sequence[Dataset]) -> Dict[str, List[Dataset]]:
    groups: Dict[str, List[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(ds.get("AcquisitionNumber", "") or "?"), []).append(ds)
    return groups


def _interleaved(datasets: Sequence[Dataset], consistent) -> Optional[str]:
    """'two interleaved acquisitions (...)' when splitting by AcquisitionNumber makes each part
    ``consistent`` (a geometry problem the mix explains), else None."""
    groups = _acquisitions(datasets)
    if len(groups) < 2 or "?" in groups or not all(consistent(g) for g in groups.values()):
        return None
    parts = ", ".join(f"AcquisitionNumber {k}: {len(v)} images" for k, v in sorted(groups.items()))
    return f"{len(groups)} interleaved acquisitions in one series ({parts}); send one acquisition per series"


def _on_one_line(datasets: Sequence[Dataset], tolerance_mm: float) -> bool:
    if len(datasets) < 3:
        return True
    geom = SliceGeometry.from_datasets(sort_slices(datasets))
    return bool(geom.off_line_mm().max() <= tolerance_mm)


def _same_orientation(datasets: Sequence[Dataset]) -> bool:
    return len({tuple(np.round(np.asarray(ds.ImageOrientationPatient, float), 4)) for ds in datasets}) == 1


def geometry_problem(datasets: Sequence[Dataset], rules: dict) -> Optional[str]:
    """Why a series cannot be made into one volume, or None when it can.

    Accepted: gantry tilt up to ``max_tilt_deg`` (the stack is sheared; it is resampled) and
    unequal steps between slices (two-part acquisitions; resampled onto a regular grid). Refused:
    images without position/orientation/spacing, duplicate SOP Instance UIDs or positions, mixed
    image sizes or orientations, images that do not lie on one line (mixed acquisitions) and gaps
    (missing slices: a step more than ``gap_factor`` times both the neighbouring steps and the
    slices' thickness).
    """
    problem = _attribute_problem(datasets)
    if problem:
        return problem
    uids: Dict[str, List[Dataset]] = {}
    for ds in datasets:
        uids.setdefault(str(ds.get("SOPInstanceUID", "")), []).append(ds)
    for uid, same in uids.items():
        if len(same) > 1:
            return (f"SOPInstanceUID {uid} is used by {len(same)} different images "
                    f"({', '.join(_name(d) for d in same[:3])}); every slice needs its own UID")
    for name in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient"):
        values = {tuple(np.round(np.atleast_1d(np.asarray(ds.get(name, 0), dtype=float)), 4)) for ds in datasets}
        if len(values) > 1:
            same_within = (lambda g, n=name: len({tuple(np.round(np.atleast_1d(np.asarray(d.get(n, 0), float)), 4))
                                                  for d in g}) == 1)
            return _interleaved(datasets, same_within) or f"images differ in {name}"
    ordered = sort_slices(datasets)
    geom = SliceGeometry.from_datasets(ordered)
    pos, steps = geom.positions, geom.steps
    if np.any(steps < 1e-3):
        k = int(np.argmax(steps < 1e-3))
        both = f"{_name(ordered[k])} and {_name(ordered[k + 1])} at {pos[k]:.1f} mm"
        mixed = _interleaved(datasets, lambda g: len(g) < 2 or bool(np.all(np.diff(np.sort(slice_positions(g))) >= 1e-3)))
        return mixed or f"two images share one slice position ({both}): duplicate or overlapping acquisitions"
    tolerance = 0.5 * min(geom.pixel_mm)
    off = geom.off_line_mm()
    if off.max() > tolerance:
        mixed = _interleaved(datasets, lambda g: _on_one_line(g, tolerance))
        k = int(np.argmax(off))
        return mixed or (f"the image positions do not lie on one line (image {_name(ordered[k])} is "
                         f"{off[k]:.1f} mm off the line through the others): mixed acquisitions in one series")
    tilt = geom.tilt_deg
    if tilt > rules["max_tilt_deg"]:
        return f"gantry tilt of {tilt:.1f} deg; at most {rules['max_tilt_deg']:g} deg is corrected"
    thickness = np.asarray(geom.thickness_mm)
    for k, step in enumerate(steps):
        near = np.r_[steps[max(0, k - 2):k], steps[k + 1:k + 3]]
        local = float(np.median(near)) if near.size else step
        covered = np.nanmax([thickness[k], thickness[k + 1], 0.0])
        if step > rules["gap_factor"] * max(local, covered):
            missing = max(1, int(round(step / local)) - 1)
            return (f"missing slices: about {missing} slice(s) absent between {_name(ordered[k])} at {pos[k]:.1f} mm "
                    f"and {_name(ordered[k + 1])} at {pos[k + 1]:.1f} mm (a {step:.1f} mm step where the series "
                    f"steps {local:g} mm)")
    return None


@dataclass
class Selection:
    chosen: Candidate
    study_uid: str
    reasons: List[str]


def select_series(series: Mapping[Tuple[str, str], Sequence[Dataset]], rules: Optional[dict] = None) -> Selection:
    """Pick the series to analyse from ``{(study_uid, series_uid): datasets}``.

    Raises InputError with a one-line reason when the input holds several studies or no
    usable head NCCT series.
    """
    rules = rules or load_rules()
    studies = sorted({study for study, _ in series})
    if len(studies) > 1:
        raise InputError(
            EXIT_MULTIPLE_STUDIES,
            f"the input holds {len(studies)} studies ({', '.join(s[-12:] for s in studies)}); give one study per run",
        )
    candidates = [describe(uid, ds, rules) for (_, uid), ds in sorted(series.items()) if ds]
    reasons = []
    usable = []
    for c in candidates:
        if c.rejected:
            reasons.append(f"{c.label}: skipped, {'; '.join(c.rejected)}")
        else:
            usable.append(c)
    if not usable:
        summary = "; ".join(sorted({r for c in candidates for r in c.rejected[:1]}))
        raise InputError(EXIT_NO_SERIES, f"no head non-contrast CT series found ({summary})")
    usable.sort(key=lambda c: rank_key(c, rules))
    first_problem = None
    for c in usable:
        problem = geometry_problem(c.datasets, rules)
        if problem is None:
            notes = "".join(f"; {n}" for n in c.notes)
            reasons.append(f"{c.label}: chosen ({c.thickness_mm:g} mm, kernel '{c.kernel or 'n/a'}'{notes})")
            for r in reasons:
                log.info("series selection: %s", r)
            return Selection(chosen=c, study_uid=studies[0], reasons=reasons)
        reasons.append(f"{c.label}: skipped, {problem}")
        first_problem = first_problem or f"{c.label}: {problem}"
    raise InputError(EXIT_BAD_SERIES, f"no usable CT series; {first_problem}")


def group_series(datasets: Sequence[Dataset]) -> Dict[Tuple[str, str], List[Dataset]]:
    """Group datasets by (StudyInstanceUID, SeriesInstanceUID)."""
    groups: Dict[Tuple[str, str], List[Dataset]] = {}
    for ds in datasets:
        key = (str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
        groups.setdefault(key, []).append(ds)
    return groups
