"""Infarct Dice by HU drop: join evaluate.json's per-case Dice with the phantoms' truth.json.

    python train/infarct_seg/scripts/report.py --raw build/infarct_seg/eval/val_mean_dice_raw.csv \
        --phantoms build/data/ph_test [--min-hu-drop 4]

Cases whose truth has no acute infarct (Dice undefined) are listed but not averaged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path


def _case(filename: str) -> str:
    name = Path(filename).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", type=Path, required=True, help="val_mean_dice_raw.csv written by evaluate.json")
    ap.add_argument("--phantoms", type=Path, required=True, help="make_phantoms folder of the evaluated cases")
    ap.add_argument("--min-hu-drop", type=float, default=4.0)
    args = ap.parse_args(argv)
    rows = list(csv.DictReader(args.raw.open()))
    kept = []
    for row in rows:
        case = _case(row["filename"])
        truth = json.loads((args.phantoms / case / "truth.json").read_text())
        value = float(row["mean"])
        hu = truth.get("hu_drop")
        print(f"{case}: kind {truth['kind']}, hu_drop {hu}, infarct {truth['infarct_volume_ml']} ml, Dice "
              + ("n/a (no infarct)" if math.isnan(value) else f"{value:.3f}"))
        if truth["kind"] == "acute" and hu is not None and hu >= args.min_hu_drop and not math.isnan(value):
            kept.append(value)
    mean = sum(kept) / len(kept) if kept else float("nan")
    print(f"mean Dice, acute cases with hu_drop >= {args.min_hu_drop:g}: {mean:.3f} (n = {len(kept)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
