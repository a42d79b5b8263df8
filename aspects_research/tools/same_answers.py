"""Same answers, faster: the app of this tree against a reference version (the slow path) on phantoms.

    aspects-same-answers --cases DIR [DIR ...] --reference-app OLD/app.py --out WORK
                         [--repeat] [--reference-only] [--models models] [--json FILE]

(or ``python -m aspects_research.tools.same_answers``). OLD is a checkout of the reference
version (``git archive main | tar -x -C OLD``): ``python OLD/app.py`` imports OLD's own packages
(the script's folder comes first on ``sys.path``). Each case (``DIR/<case_id>/dicom``,
``aspects-make-phantoms``) is run through the reference app
and through this tree's app (``--repeat``: twice, for determinism). The rule (issue 14):

* identical scores: ASPECTS per side, total, affected side, every region's involvement and
  assessability, the flags;
* masks: Dice >= 0.99 of the infarct mask and of the region map (pooled over the 20 labels)
  against the reference, on the source grid (``nifti/*.nii.gz``);
* deterministic: the two runs of this tree give identical masks and an identical aspects.json
  apart from ``timings_s``.

Prints one line per case and a summary; exit 0 when every case passes, 1 when one does not.
The reference runs are kept and reused when their aspects.json is present (they take long;
``--rerun-reference`` repeats them); ``--reference-only`` makes them and stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from aspects.errors import EXIT_USAGE, InputError
from aspects_research.metrics import agreement_dice
from aspects_research.tools.evaluate import ROOT, read_mask, run_app

MIN_DICE = 0.99
RUN_ONLY_KEYS = ("timings_s",)  # differ run to run by nature


def score_view(result: dict) -> dict:
    """What must be identical: the scores, the involvement of every region, the flags."""
    regions = {side: {code: (r.get("involved"), r.get("assessable")) for code, r in codes.items()}
               for side, codes in (result.get("regions") or {}).items()}
    return {"aspects": result.get("aspects"), "score": result.get("score"), "affected_side": result.get("affected_side"),
            "regions": regions, "flags": sorted(result.get("flags") or [])}


def label_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice pooled over the labels 1..20: 2 * voxels with the same non-zero label / all labelled voxels."""
    total = int((a > 0).sum()) + int((b > 0).sum())
    return 1.0 if total == 0 else 2.0 * float(((a == b) & (a > 0)).sum()) / total


def _load(run: Path) -> Optional[dict]:
    path = run / "aspects.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _masks(run: Path) -> Dict[str, np.ndarray]:
    return {name: read_mask(run / "nifti" / f"{name}.nii.gz")[0] for name in ("infarct", "regions")}


def differences(a: dict, b: dict, prefix: str = "") -> List[str]:
    """Paths of the values that differ between two JSON documents."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix]


def compare_case(ref: Path, new: Path, repeat: Optional[Path]) -> dict:
    """The rule's checks for one case (see the module docstring)."""
    r, n = _load(ref), _load(new)
    rec: dict = {"case": new.name, "reference_ok": r is not None, "candidate_ok": n is not None}
    if r is None or n is None:
        rec["pass"] = r is None and n is None  # both refused the input: the same answer
        return rec
    rm, nm = _masks(ref), _masks(new)
    rec["scores_identical"] = score_view(r) == score_view(n)
    rec["score_differences"] = differences(score_view(r), score_view(n))
    rec["aspects"] = {"reference": r.get("aspects"), "candidate": n.get("aspects")}
    rec["infarct_dice"] = agreement_dice(rm["infarct"] > 0, nm["infarct"] > 0)
    rec["regions_dice"] = label_dice(rm["regions"], nm["regions"])
    rec["infarct_ml"] = {"reference": r.get("infarct_volume_ml"), "candidate": n.get("infarct_volume_ml")}
    ok = rec["scores_identical"] and rec["infarct_dice"] >= MIN_DICE and rec["regions_dice"] >= MIN_DICE
    if repeat is not None:
        p = _load(repeat)
        same_json = p is not None and {k: v for k, v in p.items() if k not in RUN_ONLY_KEYS} == \
            {k: v for k, v in n.items() if k not in RUN_ONLY_KEYS}
        pm = _masks(repeat) if p is not None else None
        same_masks = pm is not None and all(np.array_equal(pm[k], nm[k]) for k in nm)
        rec["deterministic"] = bool(same_json and same_masks)
        ok = ok and rec["deterministic"]
    rec["pass"] = bool(ok)
    return rec


def _run(case: Path, out: Path, models: Path, app: Path, reuse: bool, timeout_s: float) -> None:
    if reuse and (out / "aspects.json").is_file():
        return
    rr = run_app(case / "dicom", out, models, out.parent / f"{out.name}.console.txt", timeout_s, app=app)
    print(f"    {app.parent.name}/{app.name} on {case.name}: exit {rr.exit_code}, {rr.wall_s:.1f} s", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, nargs="+", required=True, help="folders of phantom cases")
    ap.add_argument("--reference-app", type=Path, required=True, help="app.py of the reference (slow) version")
    ap.add_argument("--out", type=Path, required=True, help="work folder for the runs")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--repeat", action="store_true", help="run this tree twice and check determinism")
    ap.add_argument("--rerun-reference", action="store_true", help="run the reference again even when its result is there")
    ap.add_argument("--reference-only", action="store_true", help="only make the reference runs")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per app run")
    ap.add_argument("--json", type=Path, default=None, help="write the per-case records here")
    args = ap.parse_args(argv)
    try:
        if not args.reference_app.is_file():
            raise InputError(EXIT_USAGE, f"--reference-app {args.reference_app} is not a file")
        cases = sorted(c for d in args.cases for c in Path(d).iterdir() if (c / "dicom").is_dir())
        if not cases:
            raise InputError(EXIT_USAGE, f"no cases (<case>/dicom) in {' '.join(map(str, args.cases))}")
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return e.code
    records = []
    for k, case in enumerate(cases, 1):
        print(f"[{k}/{len(cases)}] {case.name}", flush=True)
        ref, new, rep = (args.out / kind / case.name for kind in ("reference", "candidate", "candidate_repeat"))
        _run(case, ref, args.models, args.reference_app, not args.rerun_reference, args.timeout)
        if args.reference_only:
            continue
        _run(case, new, args.models, ROOT / "app.py", False, args.timeout)
        if args.repeat:
            _run(case, rep, args.models, ROOT / "app.py", False, args.timeout)
        rec = compare_case(ref, new, rep if args.repeat else None)
        records.append(rec)
        print(f"    {'PASS' if rec['pass'] else 'FAIL'}: scores {'identical' if rec.get('scores_identical') else rec.get('score_differences')}, "
              f"infarct Dice {rec.get('infarct_dice', float('nan')):.4f}, regions Dice {rec.get('regions_dice', float('nan')):.4f}"
              + (f", deterministic {rec['deterministic']}" if "deterministic" in rec else ""), flush=True)
    if args.reference_only:
        return 0
    n_pass = sum(r["pass"] for r in records)
    dices = [r[k] for r in records for k in ("infarct_dice",) if k in r]
    rdices = [r[k] for r in records for k in ("regions_dice",) if k in r]
    print(f"{n_pass} of {len(records)} cases pass; min infarct Dice {min(dices, default=float('nan')):.4f}, "
          f"min regions Dice {min(rdices, default=float('nan')):.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0 if n_pass == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
