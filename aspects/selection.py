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

from aspects.dicom_geometry import slice_normal, slice_positions, sort_slices
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

    @property
    def label(self) -> str:
        return f"series {self.number} '{self.description}' ({len(self.datasets)} images)"


def _text(ds: Dataset, name: str) -> str:
    value = ds.get(name, "")
    if isinstance(value, (list, tuple)) or value.__class__.__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value or "")


def _thickness(datasets: Sequence[Dataset]) -> float:
    t = datasets[0].get("SliceThickness", None)
    if t not in (None, ""):
        return float(t)
    if len(datasets) > 1 and "ImagePositionPatient" in datasets[0]:
        return float(np.median(np.diff(np.sort(slice_positions(datasets)))))
    return float("nan")


def describe(series_uid: str, datasets: Sequence[Dataset], rules: dict) -> Candidate:
    """Build a candidate and record every rule it breaks."""
    ds0 = datasets[0]
    c = Candidate(
        series_uid=series_uid,
        datasets=list(datasets),
        description=_text(ds0, "SeriesDescription"),
        number=int(ds0.get("SeriesNumber", 0) or 0),
        thickness_mm=_thickness(datasets),
        kernel=_text(ds0, "ConvolutionKernel"),
    )
    modality = _text(ds0, "Modality")
    if modality != rules["modality"]:
        c.rejected.append(f"modality {modality or 'unknown'}, not {rules['modality']}")
        return c
    if str(ds0.get("SOPClassUID", "")) not in rules["sop_class_uids"]:
        c.rejected.append(f"SOP class {ds0.get('SOPClassUID', '?')} is not a CT image")
        return c
    image_type = [t.upper() for t in _text(ds0, "ImageType").split("\\") if t]
    missing = [t for t in rules["image_type_required"] if t not in image_type]
    if missing:
        c.rejected.append(f"ImageType {'/'.join(image_type) or 'empty'} is not {'/'.join(rules['image_type_required'])}")
    banned = [t for t in rules["image_type_excluded"] if t in image_type]
    if banned:
        c.rejected.append(f"ImageType marks it as {banned[0].lower()}")
    if re.search(rules["description_excluded_regex"], c.description or ""):
        c.rejected.append(f"description '{c.description}' is excluded")
    for attr in rules["contrast_attributes"]:
        if _text(ds0, attr).strip():
            c.rejected.append(f"contrast-enhanced ({attr} = {_text(ds0, attr).strip()})")
            break
    if "ImageOrientationPatient" not in ds0 or "ImagePositionPatient" not in ds0:
        c.rejected.append("no image position/orientation (not a cross-sectional image)")
        return c
    deviation = float(np.degrees(np.arccos(min(1.0, abs(slice_normal(ds0)[2])))))
    if deviation > rules["max_normal_deviation_deg"]:
        c.rejected.append(f"not axial (slice normal {deviation:.0f} deg from the body axis)")
    if len(datasets) < rules["min_slices"]:
        c.rejected.append(f"only {len(datasets)} images (a localizer or partial series)")
    if not np.isfinite(c.thickness_mm) or c.thickness_mm > rules["max_thickness_mm"] + 1e-6:
        c.rejected.append(f"slice thickness {c.thickness_mm:g} mm > {rules['max_thickness_mm']:g} mm")
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


def geometry_problem(datasets: Sequence[Dataset], rules: dict) -> Optional[str]:
    """Why a series cannot be stacked into one regular volume, or None when it can."""
    ds0 = datasets[0]
    for name in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient"):
        values = {tuple(np.round(np.atleast_1d(np.asarray(ds.get(name, 0), dtype=float)), 4)) for ds in datasets}
        if len(values) > 1:
            return f"images differ in {name}"
    tilt = float(ds0.get("GantryDetectorTilt", 0) or 0)
    ordered = sort_slices(datasets)
    pos = slice_positions(ordered)
    steps = np.diff(pos)
    if np.any(steps < 1e-3):
        return "two images share one slice position (duplicate or overlapping acquisitions)"
    ipp = np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in ordered])
    travel = ipp[-1] - ipp[0]
    angle = float(np.degrees(np.arccos(min(1.0, abs(np.dot(travel / np.linalg.norm(travel), slice_normal(ds0)))))))
    if max(abs(tilt), angle) > rules["max_tilt_deg"]:
        return (
            f"gantry tilt of {max(abs(tilt), angle):.1f} deg; this version needs an untilted axial "
            "reconstruction (ask the scanner for a tilt-corrected series)"
        )
    step = float(np.median(steps))
    gaps = np.where(steps > rules["gap_factor"] * step)[0]
    if gaps.size:
        k = int(gaps[0])
        missing = int(round(steps[k] / step)) - 1
        return (
            f"missing slices: {missing} slice(s) absent between positions {pos[k]:.1f} and "
            f"{pos[k + 1]:.1f} mm (spacing {step:g} mm)"
        )
    if float(steps.max() - steps.min()) > rules["spacing_tolerance_mm"]:
        return f"mixed slice spacing ({steps.min():.2f} to {steps.max():.2f} mm)"
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
            reasons.append(f"{c.label}: chosen ({c.thickness_mm:g} mm, kernel '{c.kernel or 'n/a'}')")
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
