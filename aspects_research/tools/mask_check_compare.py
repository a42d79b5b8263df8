"""Compare rules that check the voxel mask's region calls, on cached studies (aspects-evidence-cache).

    python -m aspects_research.tools.mask_check_compare --cache DIR --normals CASE ... --eval CASE ...
        [--rows] [--json OUT]

The voxel-mask rule calls a region from 10 % infarct fraction; a mask that over-reaches into a
neighbouring region (or marks normal tissue) costs a point. For every region the cached mask
involves, this tool computes, on the aligned grid, the mask-local statistics the candidate rules
use: the trimmed mean of the contralateral difference over the region's masked comparable voxels
(``masked_hu``; CSF, edge, midline and tissue near blood / old infarct left out, as the region
evidence does), their number, and the share of the mask's connected components that lies in the
region (``share``: small for a spill from a neighbour's lesion).

Null of the mask-local statistic, model-free: on the ``--normals`` studies, compact chunks of
5-35 % of each region (the voxels nearest a random region voxel, evidence_compare's injected
lesion shape) and the same trimmed mean over their comparable voxels; the chunk quantiles give
the HU minimum for a chosen false-positive rate (a random normal-tissue chunk passes the check at
that rate).

Each rule is applied on ``--eval`` studies exactly as the app combines calls (involved = mask call
that passes the rule, or the region-evidence call of config/region_evidence.json), and figures are
printed: region sensitivity by HU drop, specificity, hemisphere ASPECTS exact / within 1 and
control regions called. CASE is a case name or a glob of ``DIR/<case>.npz`` stems.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from aspects.labels import REGION_CODES, SIDES, label_value
from aspects.region_evidence import (MaskCheck, MaskCheckCalibration, chunk_null, mask_checks, evidence_calls,
                                     load_calibration, masked_region_deltas, region_deltas, score_deltas, trimmed_mean)
from aspects_research.tools.evidence_cache import load_cached
from aspects_research.tools.evidence_compare import HU_BINS, _pick, hu_bin, usable_of

CHUNK_FRACTIONS = (0.05, 0.1, 0.2, 0.35)
Row = Dict[str, object]


def null_chunks(studies: Dict[str, dict], per_region: int = 8, seed: int = 0) -> Dict[float, np.ndarray]:
    """Per chunk fraction: the app's :func:`aspects.region_evidence.chunk_null` over the studies."""
    out: Dict[float, List[float]] = {}
    for f in CHUNK_FRACTIONS:
        rng = np.random.default_rng(seed)
        out[f] = [v for d in studies.values() for v in chunk_null(d["difference"], usable_of(d), d["labels"], f,
                                                                  per_region, rng)]
    return {f: np.asarray(v) for f, v in out.items()}


def region_rows(name: str, d: dict) -> List[Row]:
    """One row per region of the study: truth, mask call (cached, the app's), the evidence inputs
    and the mask-local statistics."""
    t, mk = d["meta"]["truth"], d["meta"]["mask_involved"]
    usable, lab, inf = usable_of(d), d["labels"], d["infarct"]
    masked = masked_region_deltas(d["difference"], usable, lab, inf)
    comp, _ = ndi.label(inf, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(comp.ravel())
    rows: List[Row] = []
    for side in SIDES:
        tinv = set((t.get("involved") or {}).get(side) or ())
        for code in REGION_CODES:
            reg = lab == label_value(side, code)
            m = inf & reg
            ids = np.unique(comp[m])
            ids = ids[ids > 0]
            share = float(m.sum() / max(sizes[ids].sum(), 1)) if ids.size else 0.0
            whole = np.isin(comp, ids) & usable if ids.size else np.zeros_like(usable)
            lesion_hu = trimmed_mean(d["difference"][whole]) if whole.sum() >= 20 else None
            hu, n = masked[side][code]
            rows.append({"case": name, "kind": t["kind"], "anatomy": t.get("anatomy", "?"),
                         "hu_drop": float(t.get("hu_drop") or 0.0), "side": side, "code": code,
                         "truth": code in tinv, "mask": mk[side][code], "fraction": float(m.sum() / max(reg.sum(), 1)),
                         "masked_hu": hu, "masked_n": n, "share": share, "lesion_hu": lesion_hu,
                         "truth_fraction": float((d["truth_infarct"] & reg).sum() / max(reg.sum(), 1)),
                         "truth_of_mask": float((d["truth_infarct"] & m).sum() / max(m.sum(), 1))})
    return rows


Checks = Dict[str, Dict[str, Dict[str, MaskCheck]]]  # study -> side -> code


def score_rows(rows: List[Row], evidence: Dict[Tuple[str, str, str], bool], checks: Optional[Checks]) -> dict:
    """Figures of one variant: a cached mask call counts unless the app's check (``checks``,
    None: no check) withdraws it; involved = kept mask call or evidence call; not-assessable
    regions (mask None) count as not involved."""
    pos: Dict[str, List[int]] = {b: [0, 0] for b, _, _ in HU_BINS}
    neg = [0, 0]
    sides: Dict[Tuple[str, str], List[int]] = {}
    ctrl: List[str] = []
    for r in rows:
        key = (str(r["case"]), str(r["side"]), str(r["code"]))
        chk = None if checks is None else checks[key[0]][key[1]][key[2]]
        kept = bool(r["mask"]) and (chk is None or chk.passed)
        called = r["mask"] is not None and (kept or evidence[key])
        tr, pr = sides.get((key[0], key[1]), [0, 0])
        sides[(key[0], key[1])] = [tr + int(bool(r["truth"])), pr + int(bool(called))]
        if r["truth"]:
            b = hu_bin(float(r["hu_drop"]))  # type: ignore[arg-type]
            if b:
                pos[b][0] += int(called)
                pos[b][1] += 1
        else:
            neg[0] += 1
            neg[1] += int(called)
        if r["kind"] != "acute" and called:
            ctrl.append(f"{key[0][-4:]}:{str(r['anatomy'])[:3]}:{key[1][0].upper()}{key[2]}")
    err = [abs(t - p) for t, p in sides.values()]
    return {"sens": pos, "spec": [neg[0] - neg[1], neg[0]], "exact": [sum(e == 0 for e in err), len(err)],
            "within1": [sum(e <= 1 for e in err), len(err)], "control_regions": ctrl}


def print_figures(name: str, f: dict) -> None:
    sens = "; ".join(f"{b} {a}/{n}" for b, (a, n) in f["sens"].items())
    tot = [sum(v[0] for v in f["sens"].values()), sum(v[1] for v in f["sens"].values())]
    s, n = f["spec"]
    print(f"{name:28s} sens {sens}; all {tot[0]}/{tot[1]} | spec {s}/{n} = {s / max(n, 1):.3f} | exact "
          f"{f['exact'][0]}/{f['exact'][1]} within1 {f['within1'][0]}/{f['within1'][1]} | control regions "
          f"{len(f['control_regions'])}: {' '.join(f['control_regions'])}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--normals", nargs="*", default=[], help="normal studies for the model-free null")
    ap.add_argument("--eval", nargs="+", required=True)
    ap.add_argument("--rows", action="store_true", help="print every mask-called region's statistics")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 1.0, 1.5, 2.0], help="check minima to compare")
    ap.add_argument("--spill-shares", type=float, nargs="*", default=[0.2, 0.3], help="spill rules to compare")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write", type=Path, help="write the mask check calibrated on --normals into this calibration "
                    "file (its other entries kept; e.g. config/region_evidence.json)")
    ap.add_argument("--fpr", type=float, default=0.05, help="--write: share of normal chunks that pass (default 0.05)")
    ap.add_argument("--chunk", type=float, default=0.1, help="--write: chunk fraction of a region (default 0.1)")
    ap.add_argument("--note", default="", help="--write: appended to the mask check's source")
    args = ap.parse_args(argv)
    cal = load_calibration()
    report: Dict[str, object] = {}
    if args.normals:
        normals = {p.stem: load_cached(p) for p in _pick(args.cache, args.normals)}
        null = null_chunks(normals)
        report["null"] = {}
        for f, v in null.items():
            q = {str(a): round(float(np.quantile(v, a)), 3) for a in (0.9, 0.95, 0.99)}
            report["null"][str(f)] = {"n": int(v.size), "sd": round(float(v.std()), 3), **q}
            print(f"null chunk {f:g} of region ({len(normals)} normals): n {v.size}, mean {v.mean():.2f}, sd {v.std():.2f}, "
                  f"q90 {q['0.9']:.2f}, q95 {q['0.95']:.2f}, q99 {q['0.99']:.2f}", flush=True)
    rows: List[Row] = []
    evidence: Dict[Tuple[str, str, str], bool] = {}
    studies: Dict[str, dict] = {}
    for p in _pick(args.cache, args.eval):
        d = load_cached(p)
        studies[p.stem] = {k: d[k] for k in ("difference", "comparable", "explained", "labels", "infarct")}
        rows += region_rows(p.stem, d)
        calls = evidence_calls(score_deltas(region_deltas(d["difference"], usable_of(d), d["labels"]), cal), cal)
        evidence.update({(p.stem, s, c): calls[s][c] for s in SIDES for c in REGION_CODES})
    if args.rows:
        print("case   kind  anat  hu  reg   T  frac  n_mask  masked_hu  share  evidence  lesion_hu  truth_frac  truth_of_mask")
        for r in rows:
            if r["mask"]:
                hu = "   -  " if r["masked_hu"] is None else f"{r['masked_hu']:6.2f}"
                print(f"{str(r['case'])[-4:]}  {str(r['kind'])[:5]:5} {str(r['anatomy'])[:3]} {r['hu_drop']:4.1f} "
                      f"{str(r['side'])[0].upper()}{r['code']:4} {'T' if r['truth'] else '.'} {r['fraction']:5.2f} "
                      f"{r['masked_n']:6d}  {hu}    {r['share']:5.2f}  {int(evidence[(r['case'], r['side'], r['code'])])}  "
                      f"{'   -  ' if r['lesion_hu'] is None else format(r['lesion_hu'], '6.2f')}  {r['truth_fraction']:5.2f}  "
                      f"{r['truth_of_mask']:5.2f}")
    if args.write:
        if not args.normals or args.chunk not in null:
            raise SystemExit(f"--write needs --normals and --chunk one of {CHUNK_FRACTIONS}")
        target = json.loads(args.write.read_text())
        check = MaskCheckCalibration(
            min_masked_hu=round(float(np.quantile(null[args.chunk], 1.0 - args.fpr)), 3), false_positive_rate=args.fpr,
            chunk_fraction=args.chunk, n_studies=len(normals),
            source=(f"{len(normals)} studies without acute change: python -m aspects_research.tools.mask_check_compare --cache "
                    f"{args.cache} --normals {' '.join(sorted(normals))} --fpr {args.fpr:g} --chunk {args.chunk:g}; "
                    f"the (1 - fpr) quantile of {null[args.chunk].size} compact chunks of {args.chunk:g} of a region, "
                    f"8 per region (chunk_null){'; ' + args.note if args.note else ''}"))
        target["mask_check"] = dataclasses.asdict(check)
        args.write.write_text(json.dumps(target, indent=2) + "\n")
        print(f"wrote mask_check min_masked_hu {check.min_masked_hu} to {args.write}")
        cal = load_calibration(args.write)
    variants: Dict[str, Optional[MaskCheckCalibration]] = {"mask (no check)": None}
    base = cal.mask_check if cal is not None and cal.mask_check is not None else MaskCheckCalibration(1.0)
    variants[f"calibrated check applied (>= {base.min_masked_hu:g} HU)"] = base  # whatever its "applies"
    for t in args.thresholds:
        variants[f"check >= {t:g} HU"] = dataclasses.replace(base, min_masked_hu=t, spill_share=None)
    for sh in args.spill_shares:
        variants[f"check + spill share < {sh:g}"] = dataclasses.replace(base, spill_share=sh)
        variants[f"spill share < {sh:g} only"] = dataclasses.replace(base, min_masked_hu=-1e9, min_voxels=0, spill_share=sh)
    figures = {}
    for name, variant in variants.items():
        checks = None if variant is None else {
            n: mask_checks(d["difference"], usable_of(d), d["labels"], d["infarct"],
                           dataclasses.replace(cal, mask_check=variant))  # type: ignore[arg-type]
            for n, d in studies.items()}
        figures[name] = score_rows(rows, evidence, checks)  # type: ignore[arg-type]
        print_figures(name, figures[name])
    report["figures"] = figures
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
