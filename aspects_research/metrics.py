"""Segmentation metrics for binary masks on a voxel grid (pure functions, no I/O).

Conventions follow the evaluator of Ostmeier et al. 2022 ("UncertainSmallEmpty"):
a mask whose volume is <= ``empty_ml`` counts as empty, and a metric that is undefined for a
case returns ``None`` (the evaluator's NaN) so that it is *excluded* from averages, never
averaged as NaN and never silently set to a best or worst value:

| metric | both empty | truth empty only | prediction empty only |
| --- | --- | --- | --- |
| Dice, IoU, volumetric similarity | None | 0 (VS: 0) | 0 (VS: 0) |
| precision | None | 0 | None |
| sensitivity | None | None | 0 |
| ASSD, HD95, surface Dice | None | None | None |
| absolute volume difference | 0 | defined | defined |

Empty cases are scored instead by detection (:func:`detection_outcome`), as Ostmeier et al. 2022 do.

Arrays are indexed ``(z, y, x)`` as ``sitk.GetArrayFromImage`` returns them, so ``spacing``
is given in the same axis order (``GetSpacing()[::-1]``), in mm.
Surfaces are the mask voxels removed by one erosion with the 6-connected structuring element
(medpy's convention); distances are Euclidean distances between surface-voxel centres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

Spacing = Sequence[float]


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int


def counts(pred: np.ndarray, truth: np.ndarray) -> Counts:
    """True positive, false positive and false negative voxel counts of two masks."""
    p, t = _as_bool(pred), _as_bool(truth)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    tp = int(np.count_nonzero(p & t))
    return Counts(tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp)


def voxel_ml(spacing: Spacing) -> float:
    """Volume of one voxel in ml (spacing in mm)."""
    return float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0


def volume_ml(mask: np.ndarray, spacing: Spacing) -> float:
    return int(np.count_nonzero(mask)) * voxel_ml(spacing)


def dice(c: Counts) -> Optional[float]:
    """2TP / (2TP + FP + FN); None when both masks are empty."""
    den = 2 * c.tp + c.fp + c.fn
    return None if den == 0 else 2.0 * c.tp / den


def agreement_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks as an agreement figure: 1.0 when both are empty (they agree),
    unlike :func:`dice`, which leaves that case undefined for accuracy averages."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(np.logical_and(a, b))) / total


def iou(c: Counts) -> Optional[float]:
    """Jaccard index TP / (TP + FP + FN); None when both masks are empty."""
    den = c.tp + c.fp + c.fn
    return None if den == 0 else c.tp / den


def precision(c: Counts) -> Optional[float]:
    """TP / (TP + FP); None when the prediction is empty."""
    den = c.tp + c.fp
    return None if den == 0 else c.tp / den


def sensitivity(c: Counts) -> Optional[float]:
    """TP / (TP + FN) (recall); None when the truth is empty."""
    den = c.tp + c.fn
    return None if den == 0 else c.tp / den


def volumetric_similarity(c: Counts) -> Optional[float]:
    """1 - |FN - FP| / (2TP + FP + FN); None when both masks are empty."""
    den = 2 * c.tp + c.fp + c.fn
    return None if den == 0 else 1.0 - abs(c.fn - c.fp) / den


def abs_volume_difference_ml(c: Counts, spacing: Spacing) -> float:
    """|V_pred - V_truth| in ml; defined for every case."""
    return abs(c.fp - c.fn) * voxel_ml(spacing)


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: the mask minus its 6-connected erosion (outside the array is background)."""
    m = _as_bool(mask)
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Spacing) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Distances (mm) from each prediction surface voxel to the truth surface and back.

    Returns ``(pred_to_truth, truth_to_pred)`` or None when either mask is empty. The
    distance transforms run on the bounding box of both masks only (plus one voxel), which
    gives the same distances as the full grid because every surface voxel lies inside it.
    """
    p, t = _as_bool(pred), _as_bool(truth)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    if not p.any() or not t.any():
        return None
    box = _bounding_box(p | t)
    p = np.pad(p[box], 1)
    t = np.pad(t[box], 1)
    sp, st = surface(p), surface(t)
    sampling = np.asarray(spacing, dtype=float)
    to_truth = ndimage.distance_transform_edt(~st, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=sampling)
    return to_truth[sp], to_pred[st]


def assd_mm(d: Tuple[np.ndarray, np.ndarray]) -> float:
    """Average symmetric surface distance: all surface distances pooled, divided by |S_p| + |S_t|
    (Ostmeier et al. 2022, supplementary table 4)."""
    a, b = d
    return float((a.sum() + b.sum()) / (a.size + b.size))


def hd95_mm(d: Tuple[np.ndarray, np.ndarray]) -> float:
    """95th percentile of the pooled symmetric surface distances (medpy's ``hd95``, used by Ostmeier et al. 2022)."""
    return float(np.percentile(np.concatenate(d), 95))


def surface_dice(d: Tuple[np.ndarray, np.ndarray], tolerance_mm: float = 5.0) -> float:
    """Surface Dice at tolerance: surface voxels of either mask within ``tolerance_mm`` of the
    other surface, over all surface voxels (the SDT of Ostmeier et al. 2022, counted per voxel, not per surfel area)."""
    a, b = d
    return float((np.count_nonzero(a <= tolerance_mm) + np.count_nonzero(b <= tolerance_mm)) / (a.size + b.size))


@dataclass(frozen=True)
class SegmentationMetrics:
    dice: Optional[float]
    iou: Optional[float]
    precision: Optional[float]
    sensitivity: Optional[float]
    assd_mm: Optional[float]
    hd95_mm: Optional[float]
    surface_dice_5mm: Optional[float]
    avd_ml: float
    volumetric_similarity: Optional[float]
    truth_ml: float
    pred_ml: float

    def as_dict(self) -> Dict[str, Optional[float]]:
        return asdict(self)


SEGMENTATION_METRICS: Tuple[str, ...] = (
    "dice", "iou", "precision", "sensitivity", "assd_mm", "hd95_mm", "surface_dice_5mm", "avd_ml", "volumetric_similarity",
)


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Spacing, empty_ml: float = 0.0,
                         tolerance_mm: float = 5.0) -> SegmentationMetrics:
    """All infarct metrics of one case; masks at or below ``empty_ml`` count as empty (Ostmeier et al. 2022)."""
    p, t = _as_bool(pred), _as_bool(truth)
    if len(spacing) != p.ndim:
        raise ValueError(f"spacing has {len(spacing)} values for a {p.ndim}-D mask")
    vp, vt = volume_ml(p, spacing), volume_ml(t, spacing)
    # Below-threshold masks are treated as empty for every metric, as the seed evaluator does.
    if vp <= empty_ml:
        p = np.zeros_like(p)
    if vt <= empty_ml:
        t = np.zeros_like(t)
    c = counts(p, t)
    d = surface_distances(p, t, spacing)
    return SegmentationMetrics(
        dice=dice(c), iou=iou(c), precision=precision(c), sensitivity=sensitivity(c),
        assd_mm=None if d is None else assd_mm(d),
        hd95_mm=None if d is None else hd95_mm(d),
        surface_dice_5mm=None if d is None else surface_dice(d, tolerance_mm),
        avd_ml=abs(vp - vt), volumetric_similarity=volumetric_similarity(c), truth_ml=vt, pred_ml=vp,
    )


def detection_outcome(truth_ml: float, pred_ml: float, empty_ml: float = 0.0) -> str:
    """'tp' / 'tn' / 'fp' / 'fn' of lesion presence (volume > ``empty_ml``), as Ostmeier et al. 2022 classify cases."""
    t, p = truth_ml > empty_ml, pred_ml > empty_ml
    return ("t" if t == p else "f") + ("p" if p else "n")


def label_dice(pred: np.ndarray, truth: np.ndarray, labels: Iterable[int]) -> Dict[int, Optional[float]]:
    """Dice of each label value between two label maps (None where the label is absent from both)."""
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"label map shapes differ: {p.shape} vs {t.shape}")
    # One joint histogram instead of 2 x n_labels full-volume comparisons.
    labels = list(labels)
    n = int(max([int(p.max(initial=0)), int(t.max(initial=0))] + labels)) + 1
    joint = np.bincount(p.astype(np.int64).ravel() * n + t.astype(np.int64).ravel(), minlength=n * n).reshape(n, n)
    out: Dict[int, Optional[float]] = {}
    for v in labels:
        tp = int(joint[v, v])
        out[v] = dice(Counts(tp, int(joint[v, :].sum()) - tp, int(joint[:, v].sum()) - tp))
    return out


def defined(values: Iterable[Optional[float]]) -> List[float]:
    """The values that are defined (not None, not NaN)."""
    return [float(v) for v in values if v is not None and not np.isnan(v)]


@dataclass(frozen=True)
class Summary:
    n: int
    median: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    mean: Optional[float]

    def as_dict(self) -> Dict[str, Optional[float]]:
        return asdict(self)


def bootstrap_median(values: Iterable[Optional[float]], n_resamples: int = 2000, level: float = 0.90,
                     seed: int = 0) -> Summary:
    """Median with a percentile bootstrap CI (Ostmeier et al. 2022: median +- bootstrapped 90 % CI).

    Undefined values are excluded first; no defined values gives n = 0 and None everywhere.
    The generator is seeded so the report is reproducible.
    """
    v = np.asarray(defined(values), dtype=float)
    if v.size == 0:
        return Summary(0, None, None, None, None)
    rng = np.random.default_rng(seed)
    medians = np.median(v[rng.integers(0, v.size, size=(n_resamples, v.size))], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return Summary(int(v.size), float(np.median(v)), float(lo), float(hi), float(v.mean()))


@dataclass(frozen=True)
class PairedDifference:
    n: int
    mean_a: Optional[float]
    mean_b: Optional[float]
    difference: Optional[float]  # mean of b - a
    ci_low: Optional[float]
    ci_high: Optional[float]
    b_better: int  # cases where b > a

    def as_dict(self) -> Dict[str, Optional[float]]:
        return asdict(self)


def paired_bootstrap_difference(a: Sequence[Optional[float]], b: Sequence[Optional[float]],
                                n_resamples: int = 2000, level: float = 0.90,
                                seed: int = 0) -> PairedDifference:
    """Mean of ``b - a`` over cases with both values defined, with a percentile bootstrap CI that
    resamples cases (the pairs stay together; Efron & Tibshirani 1993), seeded for a reproducible
    report. Used to compare two models on the same test studies."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b) if defined([x]) and defined([y])]
    if not pairs:
        return PairedDifference(0, None, None, None, None, None, 0)
    va, vb = (np.asarray(v, dtype=float) for v in zip(*pairs))
    diff = vb - va
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_resamples, diff.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDifference(int(diff.size), float(va.mean()), float(vb.mean()), float(diff.mean()),
                            float(lo), float(hi), int((diff > 0).sum()))


def _as_bool(a: np.ndarray) -> np.ndarray:
    return np.asarray(a) != 0


def _bounding_box(mask: np.ndarray) -> Tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
