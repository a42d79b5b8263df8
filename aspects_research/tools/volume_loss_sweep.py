"""The volume-loss veto at other thresholds, from the app's own aspects.json (docs/results_v2.md,
"Volume-loss veto").

    python -m aspects_research.tools.volume_loss_sweep --set /work/data/v2/ph_test:RUNS ... [--thresholds 0.04 0.06 0.1]
    python -m aspects_research.tools.volume_loss_sweep --set CASES:RUNS --rescore OUT --threshold 0.06

The veto only withdraws calls, and aspects.json holds both what called a region (``involved_by``
plus ``withdrawn_calls``) and its share (``evidence.volume_loss``), so the region calls at any
threshold (``inf``: no veto) follow from one run of the app. The summary prints, per set and
threshold, the true and false region calls and the ASPECTS points lost on controls, then the
largest share on truly involved regions and on regions of studies without an old infarct.
``--rescore`` writes OUT/<case>/ with aspects.json re-scored at ``--threshold`` (ASPECTS,
affected side and score by :mod:`aspects.scoring`) and links to the run's other files, for
``aspects-evaluate --cases CASES --runs OUT`` without ``--run``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from aspects.labels import REGION_CODES, SIDES
from aspects.scoring import AspectsResult, RegionFinding, affected_side, aspects_per_side


def calls_before_veto(region: dict) -> List[str]:
    """The rules that called a region, whether or not the veto withdrew them."""
    return list(region.get("involved_by") or []) + list(region.get("withdrawn_calls") or [])


def involved_at(region: dict, threshold: float) -> Optional[bool]:
    """The region's involvement with the veto at ``threshold`` (None: not assessable)."""
    if region.get("assessable", True) is False:
        return None
    share = (region.get("evidence") or {}).get("volume_loss")
    return bool(calls_before_veto(region)) and not (share is not None and share > threshold)


def rescored(doc: dict, threshold: float) -> dict:
    """A copy of an aspects.json document with its region calls, ASPECTS, affected side and score
    at ``threshold``."""
    out = json.loads(json.dumps(doc))
    findings: Dict[str, Dict[str, RegionFinding]] = {}
    for side in SIDES:
        findings[side] = {}
        for code in REGION_CODES:
            r = out["regions"][side][code]
            inv, calls = involved_at(r, threshold), calls_before_veto(r)
            if inv is not None:
                r["involved"], r["involved_by"] = inv, calls if inv else []
                r.pop("withdrawn_calls", None)
                if calls and not inv:
                    r["withdrawn_calls"] = calls
                ev = r.get("evidence")
                if ev is not None:
                    share = ev.get("volume_loss")
                    ev["volume_loss_veto"] = share is not None and share > threshold
                    ev["called"] = "evidence" in r["involved_by"]
            findings[side][code] = RegionFinding(inv, float(r["infarct_fraction"]), float(r["infarct_ml"]),
                                                 float(r.get("region_ml") or 0.0), inv is not None)
    scores = aspects_per_side(findings)
    result = AspectsResult(findings, scores, affected_side(findings, scores), float(out["infarct_volume_ml"]))
    out.update(aspects=scores, affected_side=result.affected_side, score=result.score)
    return out


def studies(cases: Path, runs: Path) -> Iterator[Tuple[str, dict, dict]]:
    """(case, truth.json, aspects.json) of every case the app finished."""
    for run in sorted(p for p in runs.iterdir() if (p / "aspects.json").is_file()):
        yield (run.name, json.loads((cases / run.name / "truth.json").read_text()),
               json.loads((run / "aspects.json").read_text()))


def is_control(truth: dict) -> bool:
    """A study that must score 10 / 10: not acute, or acute outside the MCA territory."""
    vol = truth.get("infarct_volume_ml") or 0.0
    return truth["kind"] != "acute" or (vol > 0 and (truth.get("infarct_outside_mca_ml") or 0.0) >= 0.9 * vol)


def sweep(cases: Path, runs: Path, thresholds: Sequence[float]) -> Dict[float, Tuple[int, int, int]]:
    """Per threshold: (true region calls, false region calls, ASPECTS points lost on controls)."""
    out = {}
    for t in thresholds:
        tp = fp = lost = 0
        for _, truth, doc in studies(cases, runs):
            for side in SIDES:
                truly = set((truth.get("involved") or {}).get(side, []))
                for code in REGION_CODES:
                    inv = bool(involved_at(doc["regions"][side][code], t))
                    tp += inv and code in truly
                    fp += inv and code not in truly
                    lost += inv and is_control(truth)
        out[t] = (tp, fp, lost)
    return out


def largest_shares(cases: Path, runs: Path) -> Tuple[Optional[tuple], Optional[tuple]]:
    """(share, case, region) of the largest share on a truly involved region, and on any region
    of a study without an old infarct."""
    involved: List[tuple] = []
    no_old: List[tuple] = []
    for case, truth, doc in studies(cases, runs):
        for side in SIDES:
            truly = set((truth.get("involved") or {}).get(side, []))
            for code in REGION_CODES:
                share = (doc["regions"][side][code].get("evidence") or {}).get("volume_loss")
                if share is None:
                    continue
                entry = (share, case, f"{side} {code}")
                if code in truly:
                    involved.append(entry)
                if truth["kind"] != "old_infarct":
                    no_old.append(entry)
    return max(involved, default=None), max(no_old, default=None)


def write_rescored(cases: Path, runs: Path, out: Path, threshold: float) -> int:
    """OUT/<case>/aspects.json at ``threshold`` and links to the run's other files; the count."""
    n = 0
    for case, _, doc in studies(cases, runs):
        folder = out / case
        folder.mkdir(parents=True, exist_ok=True)
        for f in (runs / case).iterdir():
            if f.name != "aspects.json" and not (folder / f.name).exists():
                (folder / f.name).symlink_to(f.resolve())
        (folder / "aspects.json").write_text(json.dumps(rescored(doc, threshold), indent=1))
        n += 1
    return n


def _pair(spec: str) -> Tuple[Path, Path]:
    cases, sep, runs = spec.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CASES:RUNS, got {spec!r}")
    return Path(cases), Path(runs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", type=_pair, action="append", required=True, metavar="CASES:RUNS",
                    help="the studies with truth and the app's output folder per study (aspects-evaluate --runs)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.02, 0.04, 0.06, 0.10, math.inf])
    ap.add_argument("--rescore", type=Path, help="write the runs re-scored at --threshold here (one --set)")
    ap.add_argument("--threshold", type=float, default=0.06)
    args = ap.parse_args(argv)
    if args.rescore is not None:
        if len(args.set) != 1:
            ap.error("--rescore takes one --set")
        cases, runs = args.set[0]
        print(f"{write_rescored(cases, runs, args.rescore, args.threshold)} studies re-scored at "
              f"{args.threshold} -> {args.rescore}")
        return 0
    for cases, runs in args.set:
        print(f"{cases} ({runs}):")
        for t, (tp, fp, lost) in sweep(cases, runs, args.thresholds).items():
            print(f"  max_excess {t}: true region calls {tp}, false {fp}, ASPECTS points lost on controls {lost}")
        inv, no_old = largest_shares(cases, runs)
        for what, e in (("truly involved region", inv), ("region of a study without an old infarct", no_old)):
            print(f"  largest share on a {what}: " + ("none" if e is None else f"{e[0]:+.4f} ({e[1]}, {e[2]})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
