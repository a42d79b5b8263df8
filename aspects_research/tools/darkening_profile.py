"""How a region's darkening is spread over its tissue: tissue change or sulcal asymmetry?

    python -m aspects_research.tools.consensus_study --cases SET --out DUMPS --models models --alt-iterations 1 1
    python -m aspects_research.tools.darkening_profile --dumps DUMPS [DUMPS ...] --out profile.json [--below -0.45]

For every region the app called, or the truth says is involved, in each dumped study
(``consensus_study``: ``<case>.npz`` and ``<case>.pkl.gz``), the *masked slope*: over the acute
mask's voxels in the region whose HU and mirror HU (the deformed mirror, the app's counterpart)
both lie in parenchyma, the least-squares slope of the darkening ``d = mirror - image`` against the
tissue level ``a = (mirror + image) / 2``. Regressing on the mean of the two, not on either one,
keeps independent noise of equal variance out of the slope (Bland & Altman 1986).

- an additive drop (uniform oedema, or a smooth left-right offset of the scanner): slope ~0;
- grey-white contrast lost (grey matter sinking towards white matter, as in acute ischaemia and in
  the generator's physics): the brighter tissue loses more, slope > 0;
- more CSF partial volume on the image's side (a wider sulcus or fissure, natural asymmetry):
  the darker voxels lose more, slope < 0.

Noise biases the slope: the deformed mirror is smoother than the image, so ``d`` carries more
of the image's noise and the slope of every call leans negative, most on thin noisy slices. Two
corrections are reported beside it: ``slope - other`` (the same slope over the mirror of the
masked part) and ``relative_slope`` (the masked slope minus the study's own slope over all
labelled parenchyma off the mask and its mirror, where one side's asymmetry and its mirror's
cancel). Also ``masked_delta_hu`` (the masked part's mean darkening; a strong lesion's uneven drop
leans the slope negative too, as ``a`` falls where ``d`` rises) and ``dark_minus_bright`` (the mean
darkening of the darker third of the masked tissue minus that of the brighter third, ranked by the
smoothed mirror). Then per group (false and true calls by HU drop, missed regions) the quantiles,
and with ``--below S`` how many calls a veto "masked slope < S" (``--statistic relative_slope``:
the corrected one) (``--max-delta D``: and the masked
part darkened by less than D HU) would withdraw. A measurement tool for
docs/results_v2.md (session 35); the app does not use it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from aspects.errors import EXIT_USAGE, InputError
from aspects.labels import REGION_CODES, SIDES, label_value
from aspects_research.tools import one_line_errors

TISSUE_HU = (12.0, 60.0)  # parenchyma on both sides: CSF (< 12) and calcification or blood (> 60) left out
MIN_VOXELS = 30


def parenchyma(image: np.ndarray, mirror: np.ndarray, where: np.ndarray, min_voxels: int = MIN_VOXELS) -> Optional[np.ndarray]:
    """``where`` with image and mirror both in :data:`TISSUE_HU`; None with fewer than ``min_voxels``."""
    sel = where & (image >= TISSUE_HU[0]) & (image <= TISSUE_HU[1]) & (mirror >= TISSUE_HU[0]) & (mirror <= TISSUE_HU[1])
    return sel if int(sel.sum()) >= min_voxels else None


def tissue_slope(image: np.ndarray, mirror: np.ndarray, where: np.ndarray, min_voxels: int = MIN_VOXELS) -> Optional[float]:
    """Slope of ``mirror - image`` against ``(mirror + image) / 2`` over
    :func:`parenchyma`; None with too few voxels or no spread of tissue level."""
    sel = parenchyma(image, mirror, where, min_voxels)
    if sel is None:
        return None
    h = image[sel].astype(np.float64)
    m = mirror[sel].astype(np.float64)
    d, a = m - h, 0.5 * (m + h)
    va = float(a.var())
    if va <= 1e-9:
        return None
    return float(((a - a.mean()) * (d - d.mean())).mean() / va)


def tissue_delta(image: np.ndarray, mirror: np.ndarray, where: np.ndarray, min_voxels: int = MIN_VOXELS) -> Optional[float]:
    """Mean of ``mirror - image`` over the voxels :func:`tissue_slope` uses (None as there)."""
    sel = parenchyma(image, mirror, where, min_voxels)
    if sel is None:
        return None
    return float((mirror[sel].astype(np.float64) - image[sel]).mean())


def dark_minus_bright(image: np.ndarray, mirror: np.ndarray, level: np.ndarray, where: np.ndarray,
                      min_voxels: int = MIN_VOXELS) -> Optional[float]:
    """Mean ``mirror - image`` over the darker third of the voxels :func:`tissue_slope` uses, minus
    that over the brighter third, the thirds by ``level`` (the mirror smoothed: its own noise,
    which ``mirror - image`` carries, mostly averaged out of the ranking). > 0: the darker tissue
    lost more (CSF partial volume); < 0: the brighter (grey matter) lost more."""
    sel = parenchyma(image, mirror, where, min_voxels)
    if sel is None:
        return None
    d = mirror[sel].astype(np.float64) - image[sel]
    lv = level[sel]
    lo, hi = np.percentile(lv, [100 / 3, 200 / 3])
    dark, bright = d[lv <= lo], d[lv >= hi]
    if not dark.size or not bright.size:
        return None
    return float(dark.mean() - bright.mean())


def group_of(called: bool, involved: bool, hu_drop: Optional[float]) -> Optional[str]:
    """``false call`` / ``true call <4 HU`` ... / ``missed``; None for a true negative."""
    if called and not involved:
        return "false call"
    if called:
        drop = float(hu_drop or 0.0)
        return "true call " + ("< 4 HU" if drop < 4 else "4-6 HU" if drop < 6 else ">= 6 HU")
    return "missed" if involved else None


def case_profiles(npz: Path) -> List[dict]:
    """One record per called or truly involved region of one dumped study."""
    z = np.load(npz, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    import SimpleITK as sitk

    from aspects_research.tools.consensus_study import state_path

    with gzip.open(state_path(npz), "rb") as f:
        state = pickle.load(f)

    image = sitk.GetArrayFromImage(state["pre"].aligned).astype(np.float32)
    mirror = z["counterpart_ref"].astype(np.float32)
    brain, labels, mask = z["brain"].astype(bool), z["labels"], z["app_mask"].astype(bool)
    mirrored_mask = np.flip(mask, axis=2)  # x is the last axis of the (z, y, x) arrays
    from scipy import ndimage as ndi

    level = ndi.gaussian_filter(mirror, 1.0)
    # the slope the noise alone gives on this study (the deformed mirror is smoother than the
    # image): over all labelled parenchyma of both sides, where a side's own asymmetry and its
    # mirror's cancel
    baseline = tissue_slope(image, mirror, brain & (labels > 0) & ~mask & ~mirrored_mask)
    truth = meta["truth"]
    involved_truth = truth.get("involved") or {}
    out = []
    for side in SIDES:
        other_side = "left" if side == "right" else "right"
        for code in REGION_CODES:
            call = meta["calls"][side][code]
            called, involved = bool(call.get("involved")), code in involved_truth.get(side, [])
            group = group_of(called, involved, truth.get("hu_drop"))
            if group is None:
                continue
            region = labels == label_value(side, code)
            masked = region & brain & mask
            slope = tissue_slope(image, mirror, masked)
            other = tissue_slope(image, mirror, (labels == label_value(other_side, code)) & brain & mirrored_mask)
            out.append({"case": meta["case"], "set": npz.parent.name, "side": side, "code": code, "group": group,
                        "by": call.get("involved_by"), "hu_drop": truth.get("hu_drop"), "kind": truth.get("kind"),
                        "anatomy": truth.get("anatomy"), "thickness_mm": truth.get("slice_thickness_mm"),
                        "mask_fraction": round(float(masked.sum()) / max(int(region.sum()), 1), 4),
                        "masked_slope": slope, "other_slope": other, "masked_delta_hu": tissue_delta(image, mirror, masked),
                        "dark_minus_bright": dark_minus_bright(image, mirror, level, masked),
                        "study_slope": baseline,
                        "relative_slope": None if slope is None or baseline is None else slope - baseline,
                        "slope_minus_other": None if slope is None or other is None else slope - other})
    return out


def quantiles(values: Sequence[float]) -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return "n 0"
    p = np.percentile(v, [5, 25, 50, 75, 95])
    return f"n {v.size}, p5 {p[0]:.2f}, p25 {p[1]:.2f}, median {p[2]:.2f}, p75 {p[3]:.2f}, p95 {p[4]:.2f}"


STATISTICS = ("masked_slope", "relative_slope")


def vetoed(record: dict, below: float, max_delta: Optional[float] = None, statistic: str = "masked_slope") -> bool:
    """Whether a veto "``statistic`` < ``below`` (and masked darkening < ``max_delta`` HU)" withdraws the call."""
    slope, delta = record[statistic], record.get("masked_delta_hu")
    if slope is None or slope >= below:
        return False
    return max_delta is None or (delta is not None and delta < max_delta)


def summary(records: Sequence[dict], below: Optional[float] = None, max_delta: Optional[float] = None,
            statistic: str = "masked_slope") -> str:
    """The quantiles of the statistics per group, and a veto's withdrawals with ``below``."""
    groups: Dict[str, List[dict]] = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    lines = []
    for name in sorted(groups):
        rs = groups[name]
        lines.append(f"{name} ({len(rs)}): masked slope {quantiles([r['masked_slope'] for r in rs])}")
        lines.append(f"{'':>{len(name) + 5}}slope - other {quantiles([r['slope_minus_other'] for r in rs])}")
        lines.append(f"{'':>{len(name) + 5}}masked darkening (HU) {quantiles([r['masked_delta_hu'] for r in rs])}")
        lines.append(f"{'':>{len(name) + 5}}dark - bright third (HU) {quantiles([r['dark_minus_bright'] for r in rs])}")
        lines.append(f"{'':>{len(name) + 5}}study's slope {quantiles([r['study_slope'] for r in rs])}")
        lines.append(f"{'':>{len(name) + 5}}masked - study's slope {quantiles([r['relative_slope'] for r in rs])}")
        if below is not None:
            gone = sum(vetoed(r, below, max_delta, statistic) for r in rs)
            rule = f"{statistic.replace('_', ' ')} < {below:g}" + ("" if max_delta is None else f" and darkening < {max_delta:g} HU")
            lines.append(f"{'':>{len(name) + 5}}{rule}: {gone} of {len(rs)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dumps", type=Path, nargs="+", required=True, help="consensus_study dump folders")
    ap.add_argument("--out", type=Path, help="the records as JSON")
    ap.add_argument("--below", type=float, help="count the calls a veto 'masked slope < BELOW' would withdraw")
    ap.add_argument("--max-delta", type=float, help="with --below: only calls whose masked darkening is under this (HU)")
    ap.add_argument("--statistic", choices=STATISTICS, default="masked_slope", help="what --below bounds")
    a = ap.parse_args(argv)
    records: List[dict] = []
    for folder in a.dumps:
        files = sorted(folder.glob("*.npz"))
        if not files:
            raise InputError(EXIT_USAGE, f"no consensus_study dumps (*.npz) in {folder}")
        for npz in files:
            records.extend(case_profiles(npz))
    if a.out:
        a.out.write_text(json.dumps(records, indent=1))
    print(summary(records, a.below, a.max_delta, a.statistic))
    return 0


if __name__ == "__main__":
    sys.exit(one_line_errors(main))
