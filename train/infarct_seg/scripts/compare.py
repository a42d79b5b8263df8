"""Two infarct models on the same acute test studies: mean Dice by HU drop, paired bootstrap CI.

    python train/infarct_seg/scripts/compare.py --phantoms /work/data/v2/ph_test \
        --a OLD/eval/val_mean_dice_raw.csv --b NEW/eval/val_mean_dice_raw.csv [--names 0.3.0 0.4.0] [--cases]

Both CSVs are the per-case Dice that ``evaluate.json`` writes; each case's kind and HU drop come
from its ``truth.json``. Only acute studies are scored; the groups are those of the model card
(all, HU drop >= 4, 2-4, < 2). The difference is b - a with a paired bootstrap 90 % CI (2000
resamples, seed 0; :func:`aspects_research.metrics.paired_bootstrap_difference`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from aspects_research.metrics import paired_bootstrap_difference

GROUPS: Tuple[Tuple[str, float, float], ...] = (
    ("all acute", -math.inf, math.inf),
    ("HU drop >= 4", 4.0, math.inf),
    ("HU drop 2-4", 2.0, 4.0),
    ("HU drop < 2", -math.inf, 2.0),
)


def _case(filename: str) -> str:
    name = Path(filename).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def read_dice(raw: Path) -> Dict[str, float]:
    """``{case: Dice}`` of an ``evaluate.json`` raw CSV (NaN where the truth is empty)."""
    return {_case(row["filename"]): float(row["mean"]) for row in csv.DictReader(raw.open())}


def _fmt(values: List[float]) -> str:
    return f"{np.mean(values):.3f} ({np.median(values):.3f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phantoms", type=Path, required=True, help="make_phantoms folder of the evaluated cases")
    ap.add_argument("--a", type=Path, required=True, help="raw CSV of the reference model")
    ap.add_argument("--b", type=Path, required=True, help="raw CSV of the candidate model")
    ap.add_argument("--names", nargs=2, default=("a", "b"), help="column names of the two models")
    ap.add_argument("--cases", action="store_true", help="also print the per-case table")
    args = ap.parse_args(argv)
    da, db = read_dice(args.a), read_dice(args.b)
    missing = sorted(set(da) ^ set(db))
    if missing:
        print(f"error: cases in only one CSV: {', '.join(missing[:5])}", file=sys.stderr)
        return 2
    acute = []
    for case in sorted(da):
        truth = json.loads((args.phantoms / case / "truth.json").read_text())
        if truth["kind"] == "acute" and truth.get("hu_drop") is not None:
            acute.append((case, truth))
    na, nb = args.names
    print(f"| acute studies | n | {na} | {nb} | {nb} - {na} (90 % CI) | {nb} better in |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, lo, hi in GROUPS:
        cases = [c for c, t in acute if lo <= t["hu_drop"] < hi]
        if not cases:
            continue
        d = paired_bootstrap_difference([da[c] for c in cases], [db[c] for c in cases])
        if d.n == 0:
            continue
        ci = f"{d.difference:+.3f} ({d.ci_low:+.3f} to {d.ci_high:+.3f})" if d.n > 2 else f"{d.difference:+.3f}"
        print(f"| {label} | {d.n} | {_fmt([da[c] for c in cases])} | {_fmt([db[c] for c in cases])} | {ci} "
              f"| {d.b_better} of {d.n} |")
    if args.cases:
        print(f"\n| case | anatomy | mm | HU drop | infarct ml | {na} | {nb} |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for case, t in acute:
            print(f"| {case} | {t.get('anatomy', '?')} | {t.get('slice_thickness_mm', '?')} | {t['hu_drop']:.1f} "
                  f"| {t['infarct_volume_ml']:.1f} | {da[case]:.3f} | {db[case]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
