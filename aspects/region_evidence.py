"""Region-level evidence of early ischaemic change: each ASPECTS region against its mirror.

A 2-4 HU drop is below the voxel noise of a head CT (3-6 HU at 5 mm), so the voxel mask of the
segmenters misses it; averaged over a whole region it is not. This is how region-based ASPECTS
tools see early change (e-ASPECTS, Brainomix; Herweh et al. 2016) and how readers compare a region
with the same region on the other side.

Two statistics per region on the template-aligned grid, both over the region's comparable
parenchyma (not CSF, blood, calcification, brain edge or midline:
:func:`aspects.asymmetry.comparable_parenchyma`) of the contralateral difference map
``smooth(counterpart) - smooth(image)`` (HU, positive = darker than the mirror;
:func:`aspects.asymmetry.difference_map`, counterpart deformed onto the image so natural
asymmetry is not read as change):

- whole-region change, ``delta_hu``: the 10 %-trimmed mean (trimming keeps a sulcus, a vessel or
  a few misregistered voxels from moving it). It sees a change over most of a region, but a
  region counts as involved from 10 % infarcted (:data:`aspects.scoring.DEFAULT_INVOLVEMENT_FRACTION`),
  and 3 HU over a fifth of a region moves the mean by only ~0.6 HU.
- partial-region change, ``partial_hu`` (:func:`tail_skew`): the mean of the region's darkest
  :data:`TAIL_FRACTION` (against the mirror) above the median, minus the same for its brightest
  fraction below it, ``(upper - median) - (median - lower)``. Symmetric noise and a darkening or
  brightening of the whole region (a real head's natural asymmetry of 1-1.5 HU) leave it at 0; a
  change over 10-35 % of the region moves it by about half the lesion's HU drop or more (the
  quieter the region, the more), where the region mean moves by the drop times the fraction. This is how a reader
  sees a dark patch within one region, and why region-based tools look at a region's distribution,
  not only its mean (Nagel et al. 2017, e-ASPECTS; Herweh et al. 2016).

Tissue that another finding explains is left out on both sides: within 8 mm of blood or of an old
(CSF-like) infarct and of their mirror images (a haematoma makes its mirror look dark; an old
infarct's gliotic rim is hypodense without being acute).

Mask check (:func:`mask_checks`): the same comparison over the part of a region the acute voxel
mask claims - a mask call needs enough comparable masked voxels, darker than the mirror by the
95th percentile of random 10 %-of-region chunks of normal tissue (:func:`chunk_null`, free of any
segmenter), and optionally not only a neighbour lesion's edge (``spill_share``).

Volume loss (:func:`region_volume_loss`): the share of a region's brain voxels at CSF density
minus the same share at the mirrored voxels. An old (chronic) infarct pulls its sulci and
ventricle wide (ex-vacuo change) and its cavity reaches CSF density; acute swelling narrows them
(Wardlaw and Mielke 2005; von Kummer et al. 2001). Where the calibration applies the veto, a
region whose share exceeds its ``max_excess`` is not called (its mask and evidence calls are
withdrawn): its hypodensity is read as chronic. The shipped calibration reports the share only:
a real head's own frontal CSF reached the threshold (docs/results_v2.md). The threshold stays at
CSF density (8 HU) because strong acute infarcts (10-12 HU drops) reach 12 HU.

Calibration (:func:`calibrate`, ``aspects-calibrate-evidence``): on normal studies each statistic
of region code ``c`` scatters around 0 with a robust SD ``sigma_c`` (anatomical asymmetry,
registration error, noise); ``z = value / sigma_c``. Each statistic's call threshold is the
calibrated one-sided quantile for half the chosen false-positive rate per region (a region is
called when either statistic calls it), and each needs a least value in HU
(``min_delta_hu``, ``partial.min_delta_hu``) so that a very quiet region cannot be called on a
fraction of a HU.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from aspects.flags import BLOOD_EXCLUSION_MARGIN_MM, Findings, near_or_mirror
from aspects.labels import REGION_CODES, SIDES, label_value

# Trimmed mean: drop this fraction at each end (robust to CSF partial volume and misregistration).
TRIM = 0.1
# Partial-region statistic: the darkest and brightest fifth of the region. A region is involved
# from 10 % infarcted; a fifth is the smallest part a 2-5 HU change must cover for the mean of
# that part to carry most of its drop after the difference map's smoothing. On generator-v2
# normals (template and scct anatomy) and lesions added to real-head normals, 0.15 gave the same
# detection with more false calls, and smoothing the difference further (2-4 mm) lost more
# contrast than noise (aspects-evidence-compare, docs/results.md).
TAIL_FRACTION = 0.2
# Fewer comparable voxels than this (2 mm voxels: 0.4 ml) and the region gives no evidence.
MIN_VOXELS = 50
# Fewer masked comparable voxels than this (0.16 ml) in a region and its mask-local check has no value.
MIN_MASKED_VOXELS = 20
EXCLUSION_MARGIN_MM = 8.0
DEFAULT_CALIBRATION = Path(__file__).resolve().parent.parent / "config" / "region_evidence.json"


@dataclass(frozen=True)
class RegionEvidence:
    """One region's comparison with its mirror: ``delta_hu`` (whole-region change, positive =
    darker), ``z`` (its calibrated score; None without calibration or voxels), ``n_voxels``
    (comparable voxels used), ``partial_hu`` / ``partial_z``: the partial-region change
    (:func:`tail_skew`) and its calibrated score."""

    delta_hu: Optional[float]
    z: Optional[float]
    n_voxels: int
    partial_hu: Optional[float] = None
    partial_z: Optional[float] = None
    # share of the region's brain voxels at CSF density minus the mirror's (:func:`region_volume_loss`)
    volume_loss: Optional[float] = None
    # the volume loss exceeds the calibrated maximum and the rule applies: no call in the region
    volume_loss_veto: bool = False


@dataclass(frozen=True)
class MaskSupportCalibration:
    """A call by the voxel mask alone on less than ``below_fraction`` of a region stands only where
    the region's whole-region difference to its mirror (``delta_hu``) is at least ``min_delta_hu``:
    a sliver of a neighbour's lesion or of a registration edge over tissue that is on average no
    darker than its mirror is not early ischaemic change in that region. A region whose
    difference cannot be measured keeps the call (``applies`` False: not used)."""

    below_fraction: float
    min_delta_hu: float
    applies: bool = True
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping) -> MaskSupportCalibration:
        return cls(below_fraction=float(d["below_fraction"]), min_delta_hu=float(d["min_delta_hu"]),
                   applies=bool(d.get("applies", True)), source=str(d.get("source", "")))


@dataclass(frozen=True)
class VolumeLossCalibration:
    """The volume-loss rule: a region whose share of brain voxels below ``threshold_hu`` exceeds
    the mirror's by more than ``max_excess`` is not called (``applies`` False: reported only)."""

    max_excess: float
    threshold_hu: float = 8.0
    applies: bool = True
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping) -> VolumeLossCalibration:
        return cls(max_excess=float(d["max_excess"]), threshold_hu=float(d.get("threshold_hu", 8.0)),
                   applies=bool(d.get("applies", True)), source=str(d.get("source", "")))


@dataclass(frozen=True)
class PartialCalibration:
    """Per-code robust SD of :func:`tail_skew` on normal studies and its call rule."""

    sigma_hu: Dict[str, float]
    z_call: float
    min_delta_hu: float
    tail_fraction: float = TAIL_FRACTION
    # False: partial_hu / partial_z are computed and reported (aspects.json, SR) but do not call a
    # region. The shipped file sets it False: on the v2 test split the partial rule added 3 true
    # regions for 8 false ones and 2 control regions (docs/results.md, region evidence).
    calls: bool = True

    @classmethod
    def from_json(cls, d: Mapping) -> PartialCalibration:
        missing = set(REGION_CODES) - set(d["sigma_hu"])
        if missing:
            raise ValueError(f"region evidence calibration (partial) lacks codes {sorted(missing)}")
        return cls(sigma_hu={k: float(v) for k, v in d["sigma_hu"].items()}, z_call=float(d["z_call"]),
                   min_delta_hu=float(d["min_delta_hu"]), tail_fraction=float(d.get("tail_fraction", TAIL_FRACTION)),
                   calls=bool(d.get("calls", True)))


@dataclass(frozen=True)
class MaskCheckCalibration:
    """The mask-local check of a region's voxel-mask call (:func:`mask_checks`): the masked
    comparable parenchyma must number ``min_voxels`` and be ``min_masked_hu`` darker than its
    contralateral counterpart; ``min_masked_hu`` is the (1 - ``false_positive_rate``) quantile of
    the same statistic over compact chunks of ``chunk_fraction`` of a region on normal studies
    (:func:`chunk_null`), so a region's mask call stands only where its masked tissue is darker
    than all but that share of normal tissue. ``applies`` False: computed and reported, not used.

    Spill (``spill_share`` None: off): a region whose masked voxels are under ``spill_share`` of
    the mask lesions (connected components) they belong to, and under ``spill_fraction`` of the
    region, holds only the edge of a lesion centred in a neighbour (the mask's rim, or the
    region map's boundary error); its mask call needs ``spill_fraction`` instead of the fraction
    threshold."""

    min_masked_hu: float
    min_voxels: int = MIN_MASKED_VOXELS
    false_positive_rate: float = 0.05
    chunk_fraction: float = 0.1
    n_studies: int = 0
    source: str = ""
    applies: bool = True
    spill_share: Optional[float] = None
    spill_fraction: float = 0.2

    @classmethod
    def from_json(cls, d: Mapping) -> MaskCheckCalibration:
        return cls(min_masked_hu=float(d["min_masked_hu"]), min_voxels=int(d.get("min_voxels", MIN_MASKED_VOXELS)),
                   false_positive_rate=float(d.get("false_positive_rate", 0.05)),
                   chunk_fraction=float(d.get("chunk_fraction", 0.1)), n_studies=int(d.get("n_studies", 0)),
                   source=str(d.get("source", "")), applies=bool(d.get("applies", True)),
                   spill_share=None if d.get("spill_share") is None else float(d["spill_share"]),
                   spill_fraction=float(d.get("spill_fraction", 0.2)))


@dataclass(frozen=True)
class MaskCheck:
    """One region's mask-local check: ``masked_hu`` (trimmed mean of the difference over the
    region's masked comparable voxels, positive = darker than the mirror; None below the voxel
    minimum), ``n_voxels`` (those voxels), ``share`` (of the mask lesions reaching the region, the
    part inside it), ``spill`` (the region holds only a neighbour lesion's edge), ``passed``
    (enough voxels, dark enough, not a spill) and ``applies`` (a failed check withdraws the
    region's mask call)."""

    masked_hu: Optional[float]
    n_voxels: int
    passed: bool
    applies: bool = True
    share: Optional[float] = None
    spill: bool = False


@dataclass(frozen=True)
class Calibration:
    """Per-code robust SD of the statistic on normal studies and the call rule."""

    sigma_hu: Dict[str, float]
    z_call: float
    min_delta_hu: float
    false_positive_rate: float
    n_studies: int
    source: str = ""
    # None (a calibration file of before the partial statistic): only the whole-region rule calls.
    partial: Optional[PartialCalibration] = None
    # None (a file without "mask_check"): the voxel mask's region calls are not checked.
    mask_check: Optional[MaskCheckCalibration] = None
    # None (a file without "volume_loss"): volume loss is neither measured nor used.
    volume_loss: Optional[VolumeLossCalibration] = None
    # None (a file without "mask_support"): a mask call needs no support from the region's mean.
    mask_support: Optional[MaskSupportCalibration] = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> Calibration:
        missing = set(REGION_CODES) - set(d["sigma_hu"])
        if missing:
            raise ValueError(f"region evidence calibration lacks codes {sorted(missing)}")
        part, check, loss, support = d.get("partial"), d.get("mask_check"), d.get("volume_loss"), d.get("mask_support")
        return cls(sigma_hu={k: float(v) for k, v in d["sigma_hu"].items()}, z_call=float(d["z_call"]),
                   min_delta_hu=float(d["min_delta_hu"]), false_positive_rate=float(d["false_positive_rate"]),
                   n_studies=int(d["n_studies"]), source=str(d.get("source", "")),
                   partial=None if part is None else PartialCalibration.from_json(part),
                   mask_check=None if check is None else MaskCheckCalibration.from_json(check),
                   volume_loss=None if loss is None else VolumeLossCalibration.from_json(loss),
                   mask_support=None if support is None else MaskSupportCalibration.from_json(support))


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


def tail_skew(values: np.ndarray, fraction: float = TAIL_FRACTION) -> float:
    """``(upper - median) - (median - lower)``: ``upper`` / ``lower`` the means of the highest /
    lowest ``fraction`` of ``values``. 0 for any symmetric spread and unchanged by adding a
    constant; a shift of a part (up to ~``fraction``) of the values moves it by a good part of the
    shift (all of it when the shift is large against the spread)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    k = max(1, int(round(fraction * v.size)))
    part = np.partition(v, (k - 1, v.size - k))
    return float(part[v.size - k:].mean() + part[:k].mean() - 2.0 * np.median(v))


def explained_tissue(found: Findings, margin_mm: float = EXCLUSION_MARGIN_MM,
                     blood_margin_mm: Optional[float] = None) -> np.ndarray:
    """Voxels near an old infarct (within ``margin_mm``) or blood (within ``blood_margin_mm``,
    default BLOOD_EXCLUSION_MARGIN_MM), or near their mirror images (aligned grid)."""
    out = np.zeros(found.old_infarct.shape, bool)
    bm = BLOOD_EXCLUSION_MARGIN_MM if blood_margin_mm is None else blood_margin_mm
    for mask, mm in ((found.old_infarct, margin_mm), (found.blood_explains, bm)):
        if mask.any():
            out |= near_or_mirror(mask, mm, found.spacing_mm)
    return out


def region_deltas(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                  min_voxels: int = MIN_VOXELS) -> Dict[str, Dict[str, tuple]]:
    """``{side: {code: (delta_hu | None, n_voxels, partial_hu | None)}}`` on the aligned grid
    (all arrays (z, y, x)): :func:`trimmed_mean` and :func:`tail_skew` of each region."""
    if not diff.shape == comparable.shape == regions.shape:
        raise ValueError(f"shapes differ: diff {diff.shape}, comparable {comparable.shape}, regions {regions.shape}")
    out: Dict[str, Dict[str, tuple]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            sel = (regions == label_value(side, code)) & comparable
            n = int(sel.sum())
            v = diff[sel]
            out[side][code] = (trimmed_mean(v), n, tail_skew(v)) if n >= min_voxels else (None, n, None)
    return out


def masked_region_deltas(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray, mask: np.ndarray,
                         min_voxels: int = MIN_MASKED_VOXELS) -> Dict[str, Dict[str, tuple]]:
    """``{side: {code: (masked_hu | None, n_voxels)}}``: the :func:`trimmed_mean` of the difference
    over the region's voxels that ``mask`` (the acute voxel mask) marks and that are comparable
    (None below ``min_voxels`` of them). All arrays (z, y, x) on the aligned grid."""
    if not diff.shape == comparable.shape == regions.shape == mask.shape:
        raise ValueError(f"shapes differ: diff {diff.shape}, comparable {comparable.shape}, "
                         f"regions {regions.shape}, mask {mask.shape}")
    per = region_deltas(diff, mask.astype(bool) & comparable.astype(bool), regions, max(min_voxels, 1))
    return {side: {code: entry[:2] for code, entry in codes.items()} for side, codes in per.items()}


def mask_checks(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray, mask: np.ndarray,
                calibration: Optional[Calibration]) -> Optional[Dict[str, Dict[str, MaskCheck]]]:
    """:class:`MaskCheck` per side and code (None without a ``mask_check`` calibration)."""
    check = calibration.mask_check if calibration is not None else None
    if check is None:
        return None
    shares = lesion_shares(regions, mask)
    out: Dict[str, Dict[str, MaskCheck]] = {}
    for side, per in masked_region_deltas(diff, comparable, regions, mask, check.min_voxels).items():
        out[side] = {}
        for code, (hu, n) in per.items():
            share, fraction = shares[side][code]
            spill = (check.spill_share is not None and share is not None and share < check.spill_share
                     and fraction < check.spill_fraction)
            dark = hu is not None and hu >= check.min_masked_hu
            out[side][code] = MaskCheck(None if hu is None else round(float(hu), 3), n, dark and not spill,
                                        check.applies, None if share is None else round(share, 3), spill)
    return out


def lesion_shares(regions: np.ndarray, mask: np.ndarray) -> Dict[str, Dict[str, tuple]]:
    """``{side: {code: (share | None, fraction)}}``: of the mask's lesions (26-connected
    components) that reach into the region, the part inside it (None where the mask misses the
    region), and the masked fraction of the region, on the grid given."""
    from scipy import ndimage as ndi

    lesions, _ = ndi.label(mask.astype(bool), structure=np.ones((3, 3, 3), bool))
    size = np.bincount(lesions.ravel())
    out: Dict[str, Dict[str, tuple]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            reg = regions == label_value(side, code)
            ids = lesions[reg]
            ids = ids[ids > 0]
            if not ids.size:
                out[side][code] = (None, 0.0)
                continue
            total = float(size[np.unique(ids)].sum())
            out[side][code] = (ids.size / total, ids.size / float(reg.sum()))
    return out


def chunk_null(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray, fraction: float,
               per_region: int, rng: np.random.Generator) -> list:
    """Null samples of the mask-local statistic on a normal study, free of any segmenter: for
    ``per_region`` random compact chunks of ``fraction`` of each region (the region voxels nearest
    a random comparable region voxel), the :func:`trimmed_mean` of the difference over the chunk's
    comparable voxels (chunks with fewer than :data:`MIN_MASKED_VOXELS` left out)."""
    out = []
    for side in SIDES:
        for code in REGION_CODES:
            reg = regions == label_value(side, code)
            pts, seeds = np.argwhere(reg), np.argwhere(reg & comparable)
            if len(seeds) < MIN_VOXELS:
                continue
            k = max(1, int(round(fraction * len(pts))))
            for _ in range(per_region):
                near = pts[np.argsort(np.linalg.norm(pts - seeds[rng.integers(len(seeds))], axis=1))[:k]]
                inside = comparable[tuple(near.T)]
                if inside.sum() >= MIN_MASKED_VOXELS:
                    out.append(trimmed_mean(diff[tuple(near[inside].T)]))
    return out


def _partial_of(entry: tuple) -> Optional[float]:
    """The partial-region value of a :func:`region_deltas` entry (None in the older 2-tuples)."""
    return entry[2] if len(entry) > 2 else None


def score_deltas(deltas: Mapping[str, Mapping[str, tuple]],
                 calibration: Optional[Calibration]) -> Dict[str, Dict[str, RegionEvidence]]:
    """:class:`RegionEvidence` per side and code from :func:`region_deltas` output."""
    rnd = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    out: Dict[str, Dict[str, RegionEvidence]] = {}
    for side, per in deltas.items():
        out[side] = {}
        for code, entry in per.items():
            delta, n, partial = entry[0], entry[1], _partial_of(entry)
            z = pz = None
            if delta is not None and calibration is not None:
                z = delta / calibration.sigma_hu[code]
            if partial is not None and calibration is not None and calibration.partial is not None:
                pz = partial / calibration.partial.sigma_hu[code]
            out[side][code] = RegionEvidence(rnd(delta), rnd(z), int(n), rnd(partial), rnd(pz))
    return out


def region_evidence(diff: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                    calibration: Optional[Calibration]) -> Dict[str, Dict[str, RegionEvidence]]:
    """Per side and code: the region's darkening against its mirror and its calibrated score."""
    return score_deltas(region_deltas(diff, comparable, regions), calibration)


def region_volume_loss(hu: np.ndarray, brain: np.ndarray, regions: np.ndarray, threshold_hu: float = 8.0,
                       min_voxels: int = MIN_VOXELS) -> Dict[str, Dict[str, Optional[float]]]:
    """Per side and code on the aligned grid: the share of the region's brain voxels below
    ``threshold_hu`` minus the share of their mirror images (``np.flip(axis=2)``) below it; None
    for a region with fewer than ``min_voxels`` brain voxels. Positive: wider sulci / ventricle
    or a CSF-density cavity on this side (volume loss)."""
    if not hu.shape == brain.shape == regions.shape:
        raise ValueError(f"shapes differ: hu {hu.shape}, brain {brain.shape}, regions {regions.shape}")
    inside = brain.astype(bool)
    csf = (hu < threshold_hu) & inside
    labels = regions.astype(np.intp, copy=False)
    size = max(label_value(s, c) for s in SIDES for c in REGION_CODES) + 1
    n = np.bincount(labels[inside], minlength=size)
    here = np.bincount(labels[csf], minlength=size)
    # the mirrored voxel at CSF density inside the brain (outside the head is not CSF)
    there = np.bincount(labels[inside & np.flip(csf, axis=2)], minlength=size)
    return {side: {code: (None if n[v] < min_voxels else float(here[v] - there[v]) / float(n[v]))
                   for code in REGION_CODES for v in (label_value(side, code),)} for side in SIDES}


def with_volume_loss(evidence: Mapping[str, Mapping[str, RegionEvidence]],
                     loss: Mapping[str, Mapping[str, Optional[float]]],
                     rule: Optional[VolumeLossCalibration]) -> Dict[str, Dict[str, RegionEvidence]]:
    """``evidence`` with each region's volume loss and, where ``rule`` applies, its veto."""
    out: Dict[str, Dict[str, RegionEvidence]] = {}
    for side, per in evidence.items():
        out[side] = {}
        for code, ev in per.items():
            v = loss[side][code]
            veto = bool(rule is not None and rule.applies and v is not None and v > rule.max_excess)
            out[side][code] = replace(ev, volume_loss=None if v is None else round(v, 4), volume_loss_veto=veto)
    return out


def study_evidence(found: Findings, difference: np.ndarray, comparable: np.ndarray, regions: np.ndarray,
                   calibration: Optional[Calibration], acute: Optional[np.ndarray] = None,
                   hu: Optional[np.ndarray] = None, brain: Optional[np.ndarray] = None):
    """(evidence, calls, checks) of one study on the aligned grid: :func:`region_evidence` over
    the comparable parenchyma that blood or an old infarct does not explain, :func:`evidence_calls`,
    and the :func:`mask_checks` of the ``acute`` voxel mask over the same parenchyma (None without
    a mask or a mask-check calibration). With ``hu`` and ``brain`` and a volume-loss calibration,
    each region's evidence carries its :func:`region_volume_loss` and veto."""
    usable = comparable & ~explained_tissue(found)
    evidence = region_evidence(difference, usable, regions, calibration)
    rule = calibration.volume_loss if calibration is not None else None
    if rule is not None and hu is not None and brain is not None:
        evidence = with_volume_loss(evidence, region_volume_loss(hu, brain, regions, rule.threshold_hu), rule)
    checks = None if acute is None else mask_checks(difference, usable, regions, acute, calibration)
    return evidence, evidence_calls(evidence, calibration), checks


def evidence_calls(evidence: Mapping[str, Mapping[str, RegionEvidence]],
                   calibration: Optional[Calibration]) -> Dict[str, Dict[str, bool]]:
    """True where a region's evidence alone says early ischaemic change (False without
    calibration): the whole-region or the partial-region statistic reaches its threshold. The
    scorer counts such a call only where the acute mask reaches the region
    (:data:`aspects.scoring.EVIDENCE_MASK_FLOOR`)."""
    return {side: {code: region_called(ev, calibration) for code, ev in per.items()} for side, per in evidence.items()}


def region_called(ev: RegionEvidence, calibration: Optional[Calibration]) -> bool:
    """:func:`evidence_calls` of one region."""
    if calibration is None:
        return False
    whole = (ev.z is not None and ev.delta_hu is not None
             and ev.z >= calibration.z_call and ev.delta_hu >= calibration.min_delta_hu)
    p = calibration.partial
    partial = (p is not None and p.calls and ev.partial_z is not None and ev.partial_hu is not None
               and ev.partial_z >= p.z_call and ev.partial_hu >= p.min_delta_hu)
    return bool(whole or partial)


def robust_sd(values: Sequence[float]) -> float:
    """1.4826 x median absolute deviation from 0 (the statistic's null centre by symmetry)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    return float(1.4826 * np.median(v)) if v.size else float("nan")


def _null_rule(per_code: Mapping[str, list], false_positive_rate: float,
               sigma_floor_hu: float) -> tuple:
    """(sigma per code, z_call) of one statistic's normal-study values (see :func:`calibrate`)."""
    sigma = {c: max(robust_sd(v), sigma_floor_hu) for c, v in per_code.items()}
    if any(not math.isfinite(s) for s in sigma.values()):
        raise ValueError(f"codes without any evidence on the normal studies: {[c for c, s in sigma.items() if not math.isfinite(s)]}")
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) / sigma[c] for c, v in per_code.items()])
    z_call = max(NormalDist().inv_cdf(1.0 - false_positive_rate), float(np.quantile(pooled, 1.0 - false_positive_rate)))
    return {c: round(s, 4) for c, s in sigma.items()}, round(z_call, 4)


def calibrate(normal_deltas: Iterable[Mapping[str, Mapping[str, tuple]]], false_positive_rate: float = 0.01,
              min_delta_hu: float = 1.5, sigma_floor_hu: float = 0.25, source: str = "",
              partial_min_delta_hu: float = 1.0) -> Calibration:
    """Calibration from :func:`region_deltas` of normal studies.

    Both sides of a normal study are samples of the null (left minus right and right minus left),
    so the per-code SD is taken about 0. ``z_call`` is the one-sided normal quantile of the rate,
    or the empirical quantile of the pooled z of all codes where that is higher (registration
    errors on real anatomy give heavier tails than a normal law); ``sigma_floor_hu`` keeps a code
    seen on few, very similar studies from getting an unrealistically small SD. With the
    partial-region values (3-tuples) each statistic gets half of ``false_positive_rate`` (a region
    is called when either calls it); with 2-tuples only the whole-region rule is calibrated.
    """
    whole: Dict[str, list] = {c: [] for c in REGION_CODES}
    part: Dict[str, list] = {c: [] for c in REGION_CODES}
    n_studies = 0
    for study in normal_deltas:
        n_studies += 1
        for side in SIDES:
            for code in REGION_CODES:
                entry = study[side][code]
                if entry[0] is not None:
                    whole[code].append(entry[0])
                if _partial_of(entry) is not None:
                    part[code].append(_partial_of(entry))
    if n_studies == 0:
        raise ValueError("no normal studies to calibrate on")
    with_partial = all(part.values())
    rate = false_positive_rate / 2.0 if with_partial else false_positive_rate
    sigma, z_call = _null_rule(whole, rate, sigma_floor_hu)
    partial = None
    if with_partial:
        p_sigma, p_z = _null_rule(part, rate, sigma_floor_hu)
        partial = PartialCalibration(p_sigma, p_z, partial_min_delta_hu)
    return Calibration(sigma_hu=sigma, z_call=z_call, min_delta_hu=min_delta_hu,
                       false_positive_rate=false_positive_rate, n_studies=n_studies, source=source, partial=partial)
