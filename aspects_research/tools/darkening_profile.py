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

The same slope over the mirror of the masked part (``other``) has the interpolation's bias too
(the deformed mirror is smoother than the image), so ``slope - other`` is reported beside it.
Then per group (false and true calls by HU drop, missed regions) the quantiles, and with
``--below S`` how many calls a veto "masked slope < S" (``--max-delta D``: and the masked part
darkened by less than D HU) would withdraw. A measurement tool for
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


def tissue_slope(image: np.ndarray, mirror: np.ndarray, where: np.ndarray, min_voxels: int = MIN_VOXELS) -> Optional[float]:
    """Slope of ``mirror - image`` against ``(mirror + image) / 2`` over ``where`` (both in
    :data:`TISSUE_HU`); None with fewer than ``min_voxels`` voxels or no spread of tissue level."""
    sel = where & (image >= TISSUE_HU[0]) & (image <= TISSUE_HU[1]) & (mirror >= TISSUE_HU[0]) & (mirror <= TISSUE_HU[1])
    if int(sel.sum()) < min_voxels:
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
    sel = where & (image >= TISSUE_HU[0]) & (image <= TISSUE_HU[1]) & (mirror >= TISSUE_HU[0]) & (mirror <= TISSUE_HU[1])
    if int(sel.sum()) < min_voxels:
        return None
    return float((mirror[sel].astype(np.float64) - image[sel]).mean())


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
    with gzip.open(npz.with_name(npz.name.replace(".npz", ".pkl.gz")), "rb") as f:
        state = pickle.load(f)
    import SimpleITK as sitk

    image = sitk.GetArrayFromImage(state["pre"].aligned).astype(np.float32)
    mirror = z["counterpart_ref"].astype(np.float32)
    brain, labels, mask = z["brain"].astype(bool), z["labels"], z["app_mask"].astype(bool)
    mirrored_mask = np.flip(mask, axis=2)  # x is the last axis of the (z, y, x) arrays
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
                        "slope_minus_other": None if slope is None or other is None else slope - other})
    return out


def quantiles(values: Sequence[float]) -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return "n 0"
    p = np.percentile(v, [5, 25, 50, 75, 95])
    return f"n {v.size}, p5 {p[0]:.2f}, p25 {p[1]:.2f}, median {p[2]:.2f}, p75 {p[3]:.2f}, p95 {p[4]:.2f}"


def vetoed(record: dict, below: float, max_delta: Optional[float] = None) -> bool:
    """Whether a veto "masked slope < ``below`` (and masked darkening < ``max_delta`` HU)" withdraws the call."""
    slope, delta = record["masked_slope"], record.get("masked_delta_hu")
    if slope is None or slope >= below:
        return False
    return max_delta is None or (delta is not None and delta < max_delta)


def summary(records: Sequence[dict], below: Optional[float] = None, max_delta: Optional[float] = None) -> str:
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
        if below is not None:
            gone = sum(vetoed(r, below, max_delta) for r in rs)
            rule = f"masked slope < {below:g}" + ("" if max_delta is None else f" and darkening < {max_delta:g} HU")
            lines.append(f"{'':>{len(name) + 5}}{rule}: {gone} of {len(rs)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dumps", type=Path, nargs="+", required=True, help="consensus_study dump folders")
    ap.add_argument("--out", type=Path, help="the records as JSON")
    ap.add_argument("--below", type=float, help="count the calls a veto 'masked slope < BELOW' would withdraw")
    ap.add_argument("--max-delta", type=float, help="with --below: only calls whose masked darkening is under this (HU)")
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
    print(summary(records, a.below, a.max_delta))
    return 0


if __name__ == "__main__":
    sys.exit(one_line_errors(main))
