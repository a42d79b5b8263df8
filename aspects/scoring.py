"""ASPECTS from an infarct mask and an ASPECTS region map on the same grid (the overlap method of
Deep-ASPECTS, seed 003): per region the infarct fraction and volume, involvement by threshold,
the score per hemisphere, the affected side, and the total infarct volume from voxel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from aspects.labels import REGION_CODES, SIDES, label_value

# A region counts as involved when at least this fraction of its volume is infarcted. 10 % keeps
# a thin rim of registration error or a few noisy voxels from costing a point, yet counts the
# partial involvement readers score (see README "Scoring threshold"). Configurable per run.
DEFAULT_INVOLVEMENT_FRACTION = 0.10
# Optional second rule: ... or at least this many ml of it (off by default, as in the truth of the
# synthetic studies; a site may set ~1 ml so that a clear small lesion in a large region counts).
DEFAULT_INVOLVEMENT_ML: Optional[float] = None


@dataclass(frozen=True)
class RegionFinding:
    involved: bool
    infarct_fraction: float
    infarct_ml: float
    region_ml: float


@dataclass
class AspectsResult:
    regions: Dict[str, Dict[str, RegionFinding]]
    aspects: Dict[str, int]
    affected_side: Optional[str]
    infarct_volume_ml: float
    flags: List[str] = field(default_factory=list)

    @property
    def score(self) -> int:
        """The affected side's ASPECTS (10 when no side is affected)."""
        return self.aspects[self.affected_side] if self.affected_side else 10

    def regions_json(self) -> Dict[str, Dict[str, dict]]:
        return {
            side: {
                code: {
                    "involved": f.involved,
                    "infarct_fraction": round(f.infarct_fraction, 4),
                    "infarct_ml": round(f.infarct_ml, 3),
                    "region_ml": round(f.region_ml, 3),
                }
                for code, f in by_code.items()
            }
            for side, by_code in self.regions.items()
        }


def voxel_volume_ml(spacing_mm: Sequence[float]) -> float:
    return float(np.prod(np.asarray(spacing_mm, dtype=float))) / 1000.0


def region_findings(
    regions: np.ndarray,
    infarct: np.ndarray,
    voxel_ml: float,
    fraction_threshold: float = DEFAULT_INVOLVEMENT_FRACTION,
    ml_threshold: Optional[float] = DEFAULT_INVOLVEMENT_ML,
) -> Dict[str, Dict[str, RegionFinding]]:
    """Per side and region: infarct fraction, infarct ml and involvement."""
    if regions.shape != infarct.shape:
        raise ValueError(f"region map {regions.shape} and infarct mask {infarct.shape} differ in shape")
    lab = regions.astype(np.int64).ravel()
    region_vox = np.bincount(lab, minlength=21)
    infarct_vox = np.bincount(lab[infarct.ravel() > 0], minlength=21)
    out: Dict[str, Dict[str, RegionFinding]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            v = label_value(side, code)
            n, k = int(region_vox[v]), int(infarct_vox[v])
            fraction = k / n if n else 0.0
            ml = k * voxel_ml
            involved = n > 0 and k > 0 and (fraction >= fraction_threshold or (ml_threshold is not None and ml >= ml_threshold))
            out[side][code] = RegionFinding(bool(involved), float(fraction), float(ml), float(n * voxel_ml))
    return out


def aspects_per_side(findings: Dict[str, Dict[str, RegionFinding]]) -> Dict[str, int]:
    """10 minus the involved regions, per hemisphere."""
    return {side: 10 - sum(f.involved for f in findings[side].values()) for side in SIDES}


def affected_side(findings: Dict[str, Dict[str, RegionFinding]], scores: Dict[str, int]) -> Optional[str]:
    """The hemisphere with the lower score; on a tie, the one with more infarct in its regions.

    None when no region is involved on either side.
    """
    if scores["left"] == 10 and scores["right"] == 10:
        return None
    if scores["left"] != scores["right"]:
        return min(SIDES, key=lambda s: scores[s])
    ml = {s: sum(f.infarct_ml for f in findings[s].values()) for s in SIDES}
    return max(SIDES, key=lambda s: ml[s])


def score(
    regions: np.ndarray,
    infarct: np.ndarray,
    spacing_mm: Sequence[float],
    fraction_threshold: float = DEFAULT_INVOLVEMENT_FRACTION,
    ml_threshold: Optional[float] = DEFAULT_INVOLVEMENT_ML,
) -> AspectsResult:
    """ASPECTS of a study from its region map and infarct mask (same grid, spacing in mm)."""
    vml = voxel_volume_ml(spacing_mm)
    findings = region_findings(regions, infarct, vml, fraction_threshold, ml_threshold)
    scores = aspects_per_side(findings)
    return AspectsResult(
        regions=findings,
        aspects=scores,
        affected_side=affected_side(findings, scores),
        infarct_volume_ml=float(np.count_nonzero(infarct)) * vml,
    )
