"""Agreement statistics between reported and true ASPECTS (pure functions, no I/O).

A statistic that is undefined for the inputs (no cases, no positive cases, constant ratings
for kappa) is ``None``, never NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from aspects.labels import REGION_CODES, SIDES

ASPECTS_VALUES: Tuple[int, ...] = tuple(range(11))
# Dichotomy used by the guidelines: thrombectomy is recommended with ASPECTS >= 6. The
# "positive" finding a tool must not miss is a large core, ASPECTS < 6.
DEFAULT_CUTOFF = 6


@dataclass(frozen=True)
class BinaryStats:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> Optional[float]:
        return None if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)

    @property
    def specificity(self) -> Optional[float]:
        return None if self.tn + self.fp == 0 else self.tn / (self.tn + self.fp)

    def as_dict(self) -> Dict[str, Optional[float]]:
        return {**asdict(self), "sensitivity": self.sensitivity, "specificity": self.specificity}


def binary_stats(truth: Sequence[bool], pred: Sequence[bool]) -> BinaryStats:
    t, p = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} truth values but {p.size} predictions")
    return BinaryStats(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(~t & ~p)), int(np.sum(t & ~p)))


def confusion_matrix(truth: Sequence[int], pred: Sequence[int], values: Sequence[int] = ASPECTS_VALUES) -> np.ndarray:
    """Counts ``m[i, j]`` of cases with truth ``values[i]`` and prediction ``values[j]``."""
    index = {v: i for i, v in enumerate(values)}
    m = np.zeros((len(values), len(values)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        if t not in index or p not in index:
            raise ValueError(f"score outside {values[0]}..{values[-1]}: truth {t}, prediction {p}")
        m[index[t], index[p]] += 1
    return m


def quadratic_weighted_kappa(truth: Sequence[int], pred: Sequence[int],
                             values: Sequence[int] = ASPECTS_VALUES) -> Optional[float]:
    """Cohen's kappa with quadratic weights over the fixed categories ``values`` (0..10).

    Equals ``sklearn.metrics.cohen_kappa_score(t, p, labels=values, weights='quadratic')``.
    None when undefined (no cases, or both raters constant so that expected disagreement is 0).
    """
    if len(truth) == 0:
        return None
    observed = confusion_matrix(truth, pred, values).astype(float)
    k = len(values)
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    den = float(np.sum(weights * expected))
    if den == 0.0:
        return None
    return 1.0 - float(np.sum(weights * observed)) / den


@dataclass(frozen=True)
class ScoreAgreement:
    n: int
    exact: Optional[float]
    within_1: Optional[float]
    within_2: Optional[float]
    mae: Optional[float]
    mean_difference: Optional[float]  # prediction - truth: the bias
    kappa_quadratic: Optional[float]
    dichotomised: BinaryStats  # positive = score < cutoff
    cutoff: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dichotomised"] = self.dichotomised.as_dict()
        return d


def score_agreement(truth: Sequence[int], pred: Sequence[int], cutoff: int = DEFAULT_CUTOFF) -> ScoreAgreement:
    """Exact / within-1 / within-2 agreement, MAE, bias, quadratic kappa and the dichotomised score."""
    t, p = np.asarray(truth, dtype=int), np.asarray(pred, dtype=int)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true scores but {p.size} predictions")
    dich = binary_stats(t < cutoff, p < cutoff)
    if t.size == 0:
        return ScoreAgreement(0, None, None, None, None, None, None, dich, cutoff)
    diff = np.abs(p - t)
    return ScoreAgreement(
        n=int(t.size), exact=float(np.mean(diff == 0)), within_1=float(np.mean(diff <= 1)),
        within_2=float(np.mean(diff <= 2)), mae=float(diff.mean()), mean_difference=float(np.mean(p - t)),
        kappa_quadratic=quadratic_weighted_kappa(t.tolist(), p.tolist()), dichotomised=dich, cutoff=cutoff,
    )


Involvement = Dict[str, Sequence[str]]  # side -> involved region codes


def region_involvement(truths: Sequence[Involvement], preds: Sequence[Involvement]) -> Dict[str, BinaryStats]:
    """Per region code (both sides pooled) and 'all': involvement sensitivity / specificity.

    Each case contributes 20 decisions (10 regions x 2 sides).
    """
    if len(truths) != len(preds):
        raise ValueError(f"{len(truths)} truths but {len(preds)} predictions")
    per: Dict[str, List[Tuple[bool, bool]]] = {c: [] for c in REGION_CODES}
    for t, p in zip(truths, preds):
        for side in SIDES:
            ts, ps = set(t.get(side) or ()), set(p.get(side) or ())
            for code in REGION_CODES:
                per[code].append((code in ts, code in ps))
    out = {code: binary_stats([a for a, _ in v], [b for _, b in v]) for code, v in per.items()}
    pooled = [x for v in per.values() for x in v]
    out["all"] = binary_stats([a for a, _ in pooled], [b for _, b in pooled])
    return out


def side_accuracy(truth_sides: Sequence[Optional[str]], pred_sides: Sequence[Optional[str]]) -> Tuple[int, Optional[float]]:
    """(n, fraction correct) of the affected side over the cases whose true side is known."""
    pairs = [(t, p) for t, p in zip(truth_sides, pred_sides, strict=True) if t is not None]
    if not pairs:
        return 0, None
    return len(pairs), sum(t == p for t, p in pairs) / len(pairs)
