"""How much of a phantom's nominal HU drop the app can see, region by region.

    python -m aspects_research.tools.visible_drop --set DUMPS:CASES [--set DUMPS:CASES ...] [--min-hu 2]

``DUMPS``: a folder of `consensus_study` dumps (``<case>.npz`` with the truth infarct, the app's
region labels, the deformed-mirror difference map and the comparable parenchyma on the aligned
grid); ``CASES``: the phantom folder they were made from (``<case>/truth.json``). For each acute
study of at least ``--min-hu`` and each region at least 10 % infarcted by the truth: the mean of the
difference map over the region's truth-infarcted comparable voxels divided by the study's nominal
drop, and the share of those voxels that are comparable parenchyma. Prints, per region code, the
median and interquartile range over studies. A region whose share stays low is one whose lesions
the image (or the truth's labelling of it) barely darkens; docs/results_v2.md, "Why the caudate is
missed".
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from aspects.labels import REGION_CODES, SIDES, label_value

MIN_INFARCTED_FRACTION = 0.1
MIN_INFARCTED_VOXELS = 30
MIN_VOXELS = 20


def study_ratios(dump: Mapping[str, np.ndarray], hu_drop: float) -> Iterable[Tuple[str, float, float]]:
    """(code, measured darkening / nominal drop, comparable share of the infarcted voxels) for each
    region of one study that the truth infarcts by >= 10 % (ratio NaN below MIN_VOXELS comparable)."""
    labels, truth, comparable, diff = dump["labels"], dump["truth_infarct"], dump["comparable_ref"], dump["diff_ref"]
    for side in SIDES:
        for code in REGION_CODES:
            region = labels == label_value(side, code)
            infarcted = region & truth
            n = int(infarcted.sum())
            if n < max(MIN_INFARCTED_VOXELS, MIN_INFARCTED_FRACTION * region.sum()):
                continue
            seen = infarcted & comparable
            ratio = float(diff[seen].mean()) / hu_drop if seen.sum() >= MIN_VOXELS else float("nan")
            yield code, ratio, float(seen.sum()) / n


def summarise(rows: Sequence[Tuple[str, float, float]]) -> Dict[str, Dict[str, float]]:
    """Per code: n, median and quartiles of the ratio, median comparable share."""
    by: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
    for code, ratio, share in rows:
        by[code].append((ratio, share))
    out = {}
    for code in REGION_CODES:
        if not by[code]:
            continue
        r = np.array([v for v, _ in by[code] if np.isfinite(v)])
        s = np.array([v for _, v in by[code]])
        out[code] = {"n": float(r.size), "median": float(np.median(r)) if r.size else float("nan"),
                     "q1": float(np.percentile(r, 25)) if r.size else float("nan"),
                     "q3": float(np.percentile(r, 75)) if r.size else float("nan"), "comparable": float(np.median(s))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, metavar="DUMPS:CASES")
    ap.add_argument("--min-hu", type=float, default=2.0)
    args = ap.parse_args(argv)
    rows: List[Tuple[str, float, float]] = []
    for item in args.set:
        dumps, cases = (Path(p) for p in item.split(":", 1))
        for npz in sorted(dumps.glob("*.npz")):
            truth = json.loads((cases / npz.stem / "truth.json").read_text())
            if truth.get("kind") != "acute" or float(truth.get("hu_drop") or 0.0) < args.min_hu:
                continue
            with np.load(npz) as dump:
                rows.extend(study_ratios(dump, float(truth["hu_drop"])))
    print("code  n   measured darkening / nominal drop (median, IQR)   infarcted voxels comparable (median)")
    for code, s in summarise(rows).items():
        print(f"{code:4} {int(s['n']):3}   {s['median']:.2f} ({s['q1']:.2f}-{s['q3']:.2f})"
              f"                            {s['comparable']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
