"""Mask-level sweep of infarct consensus rules on consensus_study dumps (aligned grid).

    python -m aspects_research.tools.consensus_sweep DUMP [DUMP ...] [--rules touch raw mean:3.5:0.7:25 ...]

Per study (``DUMP/<case>.npz`` of :mod:`aspects_research.tools.consensus_study`) the model's raw
mask is split into 26-connected components once; each rule keeps a set of them from the maps of
the shipped mirror SyN (``ref``) and of the cheaper one (``alt``). Prints one line per rule: acute
studies' Dice against the truth (median, mean, median at HU drop >= 4), the volume kept on
controls and in how many of them, false volume in acute studies, true volume kept, and the number
of studies whose ref and alt masks differ (Dice < 0.99). Rules: ``touch`` (the app's), ``raw``
(no consensus), ``mean:T:F:N`` (:func:`aspects_research.tools.consensus_study.mean_consensus`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from aspects_research.metrics import agreement_dice
from aspects_research.tools.consensus_study import rule_function
from aspects_research.tools.evidence_cache import load_cached

DEFAULT_RULES = ("touch", "raw", "mean:3.0:0.7:25", "mean:3.5:0.7:25")


def study_rows(path: Path, rules: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per rule: Dice vs truth, kept / true / false voxels at ref, and Dice of the ref and alt masks."""
    d = load_cached(path)
    raw, truth = d["raw"], d["truth_infarct"]
    out = {}
    for rule in rules:
        f = rule_function(rule)
        masks = {syn: f(raw, d[f"diff_{syn}"], d[f"comparable_{syn}"], d[f"support_{syn}"]) & raw for syn in ("ref", "alt")}
        ref = masks["ref"]
        out[rule] = {"dice": agreement_dice(ref, truth), "kept": int(ref.sum()), "tp": int((ref & truth).sum()),
                     "stable": agreement_dice(ref, masks["alt"])}
    meta = d["meta"]
    return {"case": meta["case"], "kind": meta["truth"].get("kind"), "hu": meta["truth"].get("hu_drop") or 0.0,
            "truth": int(truth.sum()), "n_components": int(ndi.label(raw, np.ones((3, 3, 3), bool))[1]), "rules": out}


def summary(studies: List[Dict[str, Any]], rule: str, voxel_ml: float = 0.008) -> str:
    acute = [s for s in studies if s["kind"] == "acute"]
    ctrl = [s for s in studies if s["kind"] != "acute"]
    r = [s["rules"][rule] for s in acute]
    d4 = [s["rules"][rule]["dice"] for s in acute if s["hu"] >= 4]
    kept_ctrl = [s["rules"][rule]["kept"] * voxel_ml for s in ctrl]
    return (f"{rule:18} acute Dice median {np.median([x['dice'] for x in r]):.3f} mean {np.mean([x['dice'] for x in r]):.3f} "
            f"(>= 4 HU median {np.median(d4) if d4 else float('nan'):.3f}, n {len(d4)}); controls {sum(kept_ctrl):.1f} ml "
            f"in {sum(v > 0 for v in kept_ctrl)} of {len(ctrl)}; acute false {sum(x['kept'] - x['tp'] for x in r) * voxel_ml:.1f} ml, "
            f"true {sum(x['tp'] for x in r) * voxel_ml:.1f} of {sum(s['truth'] for s in acute) * voxel_ml:.1f} ml; "
            f"ref/alt masks differ (Dice < 0.99) on {sum(s['rules'][rule]['stable'] < 0.99 for s in studies)} of {len(studies)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", type=Path, nargs="+", help="consensus_study --out folders")
    ap.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES), help="touch, raw or mean:T:F:N")
    args = ap.parse_args(argv)
    paths = [p for root in args.dumps for p in sorted(root.glob("*.npz")) if not p.name.endswith(".part.npz")]
    if not paths:
        print("error[2]: no <case>.npz under the dump folders", file=sys.stderr)
        return 2
    studies = [study_rows(p, args.rules) for p in paths]
    print(f"{len(studies)} studies ({sum(s['kind'] == 'acute' for s in studies)} acute)")
    for rule in args.rules:
        print(summary(studies, rule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
