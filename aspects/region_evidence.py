"""Region-level evidence of early ischaemic change: each ASPECTS region against its mirror.

A 2-4 HU drop is below the voxel noise of a head CT (3-6 HU at 5 mm), so the voxel mask of the
segmenters misses it; averaged over a whole region it is not. This is how region-based ASPECTS
tools see early change (e-ASPECTS, Brainomix; Herweh et al. 2016) and how readers compare a region
with the same region on the other side.

Statistic, per region on the template-aligned grid: the trimmed mean of the contralateral
difference map ``smooth(counterpart) - smooth(image)`` (HU, positive = darker than the mirror;
:func:`aspects.asymmetry.difference_map`, counterpart deformed onto the image so natural
asymmetry is not read as change) over the region's comparable parenchyma (not CSF, blood,
calcification, brain edge or midline: :func:`aspects.asymmetry.comparable_parenchyma`). Trimming
keeps a sulcus, a vessel or a few misregistered voxels from moving it.

Tissue that another finding explains is left out on both sides: within 8 mm of blood or of an old
(CSF-like) infarct and of their mirror images (a haematoma makes its mirror look dark; an old
infarct's gliotic rim is hypodense without being acute).

Calibration (:func:`calibrate`, ``aspects-calibrate-evidence``): on normal studies the statistic
of region code ``c`` scatters around 0 with a robust SD ``sigma_c`` (anatomical asymmetry,
registration error, noise); ``z = delta / sigma_c``. The call threshold ``z_call`` is the
calibrated one-sided quantile for the chosen false-positive rate per region, and a region also
needs ``delta >= min_delta_hu`` so that a very quiet region cannot be called on a fraction of a HU.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from aspects.flags import Findings
from aspects.labels import REGION_CODES, SIDES, label_value

# Trimmed mean: drop this fraction at each end (robust to CSF partial volume and misregistration).
TRIM = 0.1
# Fewer comparable voxels than this (2 mm voxels: 0.4 ml) and the region gives no evidence.
MIN_VOXELS = 50
EXCLUSION_MARGIN_MM = 8.0
DEFAULT_CALIBRATION = Path(__file__).resolve().parent.parent / "config" / "region_evidence.json"


@dataclass(frozen=True)
class RegionEvidence:
    """One region's comparison with its mirror: ``delta_hu`` (positive = darker), ``z`` (calibrated
    score; None without calibration or voxels), ``n_voxels`` (comparable voxels used)."""

    delta_hu: Optional[float]
    z: Optional[float]
    n_voxels: int


@dataclass(frozen=True)
class Calibration:
    """Per-code robust SD of the statistic on normal studies and the call rule."""

    sigma_hu: Dict[str, float]
    z_call: float
    min_delta_hu: float
    false_positive_rate: float
    n_studies: int
    source: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> Calibration:
        missing = set(REGION_CODES) - set(d["sigma_hu"])
        if missing:
            raise ValueError(f"region evidence calibration lacks codes {sorted(missing)}")
        return cls(sigma_hu={k: float(v) for k, v in d["sigma_hu"].items()}, z_call=float(d["z_call"]),
                   min_delta_hu=float(d["min_delta_hu"]), false_positive_rate=float(d["false_positive_rate"]),
                   n_studies=int(d["n_studies"]), source=str(d.get("source", "")))


def load_calibration(path: Optional[Path] = None) -> Optional[Calibration]:
    """The calibration file (default ``config/region_evidence.json``); None when absent."""
    path = Path(path) if path else DEFAULT_CALIBRATION
    if not path.is_file():
        return None
    return Calibration.from_json(json.loads(path.read_text()))


def trimmed_mean(values: np.ndarray, trim: float = TRIM) -> float:
    """Mean of ``values`` without the lowest and highest ``trim`` fraction."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    k = int(math.floor(trim * v.size))
    core = v[k: v.size - k] if v.size > 2 * k else v
    return float(core.mean())


def explained_tissue(found: Findings, margin_mm: float = EXCLUSION_MARGIN_MM) -> np.ndarray:
    """Voxels near blood or an old infarct, or near their mirror images (aligned grid)."""
    from scipy import ndimage as ndi

    mask = found.blood | found.old_infarct
    if not mask.any():
        return np.zeros_like(mask)
    mask = mask | np.flip(mask, axis=2)
    return ndi.binary_dilation(mask, iterations=max(1, int(round(margin_mm / float(min(found.spacing_mm))))))


def region_deltas(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                  min_voxels: int = MIN_VOXELS) -> Dict[str, Dict[str, tuple]]:
    """``{side: {code: (delta_hu | None, n_voxels)}}`` on the aligned grid (all arrays (z, y, x))."""
    if not diff.shape == comparable.shape == regions.shape:
        raise ValueError(f"shapes differ: diff {diff.shape}, comparable {comparable.shape}, regions {regions.shape}")
    out: Dict[str, Dict[str, tuple]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            sel = (regions == label_value(side, code)) & comparable
            n = int(sel.sum())
            out[side][code] = (trimmed_mean(diff[sel]) if n >= min_voxels else None, n)
    return out


def score_deltas(deltas: Mapping[str, Mapping[str, tuple]],
                 calibration: Optional[Calibration]) -> Dict[str, Dict[str, RegionEvidence]]:
    """:class:`RegionEvidence` per side and code from :func:`region_deltas` output."""
    out: Dict[str, Dict[str, RegionEvidence]] = {}
    for side, per in deltas.items():
        out[side] = {}
        for code, (delta, n) in per.items():
            z = None
            if delta is not None and calibration is not None:
                z = delta / calibration.sigma_hu[code]
            out[side][code] = RegionEvidence(None if delta is None else round(delta, 3),
                                             None if z is None else round(z, 3), int(n))
    return out


def region_evidence(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                    calibration: Optional[Calibration]) -> Dict[str, Dict[str, RegionEvidence]]:
    """Per side and code: the region's darkening against its mirror and its calibrated score."""
    return score_deltas(region_deltas(diff, comparable, regions), calibration)


def study_evidence(found: Findings, difference: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                   calibration: Optional[Calibration]):
    """(evidence, calls) of one study on the aligned grid: :func:`region_evidence` over the
    comparable parenchyma that blood or an old infarct does not explain, and :func:`evidence_calls`."""
    usable = comparable & ~explained_tissue(found)
    evidence = region_evidence(difference, usable, regions, calibration)
    return evidence, evidence_calls(evidence, calibration)


def evidence_calls(evidence: Mapping[str, Mapping[str, RegionEvidence]],
                   calibration: Optional[Calibration]) -> Dict[str, Dict[str, bool]]:
    """True where a region's evidence alone says early ischaemic change (False without calibration)."""
    return {
        side: {
            code: bool(calibration is not None and ev.z is not None and ev.delta_hu is not None
                       and ev.z >= calibration.z_call and ev.delta_hu >= calibration.min_delta_hu)
            for code, ev in per.items()
        }
        for side, per in evidence.items()
    }


def robust_sd(values: Sequence[float]) -> float:
    """1.4826 x median absolute deviation from 0 (the statistic's null centre by symmetry)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    return float(1.4826 * np.median(v)) if v.size else float("nan")


def calibrate(normal_deltas: Iterable[Mapping[str, Mapping[str, tuple]]], false_positive_rate: float = 0.01,
              min_delta_hu: float = 1.5, sigma_floor_hu: float = 0.25, source: str = "") -> Calibration:
    """Calibration from :func:`region_deltas` of normal studies.

    Both sides of a normal study are samples of the null (left minus right and right minus left),
    so the per-code SD is taken about 0. ``z_call`` is the one-sided normal quantile of
    ``false_positive_rate``, or the empirical quantile of the pooled z of all codes where that is
    higher (registration errors on real anatomy give heavier tails than a normal law);
    ``sigma_floor_hu`` keeps a code seen on few, very similar studies from getting an
    unrealistically small SD.
    """
    per_code: Dict[str, list] = {c: [] for c in REGION_CODES}
    n_studies = 0
    for study in normal_deltas:
        n_studies += 1
        for side in SIDES:
            for code in REGION_CODES:
                delta, _ = study[side][code]
                if delta is not None:
                    per_code[code].append(delta)
    if n_studies == 0:
        raise ValueError("no normal studies to calibrate on")
    sigma = {c: max(robust_sd(v), sigma_floor_hu) for c, v in per_code.items()}
    if any(not math.isfinite(s) for s in sigma.values()):
        raise ValueError(f"codes without any evidence on the normal studies: {[c for c, s in sigma.items() if not math.isfinite(s)]}")
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) / sigma[c] for c, v in per_code.items()])
    z_call = max(NormalDist().inv_cdf(1.0 - false_positive_rate), float(np.quantile(pooled, 1.0 - false_positive_rate)))
    return Calibration(sigma_hu={c: round(s, 4) for c, s in sigma.items()}, z_call=round(z_call, 4),
                       min_delta_hu=min_delta_hu, false_positive_rate=false_positive_rate,
                       n_studies=n_studies, source=source)
