"""Calibrate the region-level evidence of early ischaemic change on normal studies.

    aspects-calibrate-evidence --runs RUNROOT [RUNROOT ...] [--cases CASEROOT ...]
        [--fpr 0.01] [--min-delta 1.5] [--partial-min-delta 1.0] [--out config/region_evidence.json]
        [--check RUNROOT ...]
    aspects-calibrate-evidence --cache NPZ [NPZ ...] [--check-cache NPZ ...] [...]

Reads the app's aspects.json of each run folder (RUNROOT/<case>/aspects.json: the per-region
``evidence.delta_hu`` the app computes with or without a calibration) and keeps the normal
studies: with ``--cases``, the cases whose truth.json (aspects-make-phantoms) says kind
"normal" (or another control without an acute MCA infarct: leukoaraiosis); without it, every run
(a folder of normal real scans). The per-code spread about 0 and the threshold for the chosen
false-positive rate go to ``--out`` (aspects.region_evidence.Calibration); ``--cache`` reads
studies cached by aspects-evidence-cache instead (the statistics recomputed with this code from
the cached difference maps; normal = truth kind in NORMAL_KINDS). ``--check`` reports
how many regions the new calibration would call on other runs (held-out normals: the measured
false-positive rate). Prints one line per study read and a table per region code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]  # the repository (a source checkout)

from aspects.errors import EXIT_USAGE, InputError  # noqa: E402
from aspects.labels import REGION_CODES, SIDES  # noqa: E402
from aspects.region_evidence import DEFAULT_CALIBRATION, Calibration, calibrate, evidence_calls, score_deltas  # noqa: E402

# Controls with no acute MCA change: their regions are samples of the null.
NORMAL_KINDS = ("normal", "leukoaraiosis")


def _truth_kind(cases: Sequence[Path], name: str) -> Optional[str]:
    for root in cases:
        t = root / name / "truth.json"
        if t.is_file():
            return json.loads(t.read_text()).get("kind")
    return None


def normal_runs(runs: Sequence[Path], cases: Sequence[Path]) -> List[Tuple[str, dict]]:
    """(name, aspects.json) of the runs that are normal studies."""
    out = []
    for root in runs:
        if not root.is_dir():
            raise InputError(EXIT_USAGE, f"--runs {root} is not a folder")
        for rdir in sorted(p for p in root.iterdir() if (p / "aspects.json").is_file()):
            if cases and _truth_kind(cases, rdir.name) not in NORMAL_KINDS:
                continue
            out.append((rdir.name, json.loads((rdir / "aspects.json").read_text())))
    return out


def deltas_of(result: dict) -> Dict[str, Dict[str, tuple]]:
    """The :func:`aspects.region_evidence.region_deltas` form of one aspects.json."""
    out: Dict[str, Dict[str, tuple]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            ev = result["regions"][side][code].get("evidence") or {}
            out[side][code] = (ev.get("delta_hu"), int(ev.get("n_voxels") or 0), ev.get("partial_hu"))
    return out


def cached_normals(paths: Sequence[Path]) -> List[Tuple[str, Dict[str, Dict[str, tuple]]]]:
    """(name, region deltas) of the normal studies among aspects-evidence-cache files, computed
    with this code's statistics from the cached difference maps."""
    from aspects.region_evidence import region_deltas
    from aspects_research.tools.evidence_cache import load_cached

    out = []
    for path in paths:
        if not path.is_file():
            raise InputError(EXIT_USAGE, f"--cache {path} is not a file")
        d = load_cached(path)
        if d["meta"]["truth"].get("kind") in NORMAL_KINDS:
            out.append((path.stem, region_deltas(d["difference"], d["comparable"] & ~d["explained"], d["labels"])))
    return out


def false_calls(studies: Iterable[Tuple[str, Dict[str, Dict[str, tuple]]]], cal: Calibration) -> Tuple[int, int, List[str]]:
    """(regions called, regions with evidence, names) when ``cal`` is applied to normal studies
    (their region deltas)."""
    called, total, names = 0, 0, []
    for name, dl in studies:
        ev = score_deltas(dl, cal)
        calls = evidence_calls(ev, cal)
        for s in SIDES:
            for c in REGION_CODES:
                total += ev[s][c].delta_hu is not None
                if calls[s][c]:
                    called += 1
                    names.append(f"{name} {s} {c}")
    return called, total, names


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", type=Path, nargs="+", help="app output roots (<case>/aspects.json)")
    src.add_argument("--cache", type=Path, nargs="+", help="aspects-evidence-cache files (<case>.npz)")
    ap.add_argument("--cases", type=Path, nargs="*", default=[], help="phantom roots with truth.json (keeps normals)")
    ap.add_argument("--fpr", type=float, default=0.01, help="false-positive rate per region (default 0.01)")
    ap.add_argument("--min-delta", type=float, default=1.5, help="smallest HU difference ever called (default 1.5)")
    ap.add_argument("--partial-min-delta", type=float, default=1.0,
                    help="smallest partial-region HU difference ever called (default 1.0)")
    ap.add_argument("--sigma-floor", type=float, default=0.25, help="smallest per-code SD in HU (default 0.25)")
    ap.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION)
    ap.add_argument("--note", default="", help="appended to the calibration's source (what the studies are)")
    ap.add_argument("--check", type=Path, nargs="*", default=[], help="other run roots of normal studies to test on")
    ap.add_argument("--check-cases", type=Path, nargs="*", default=[], help="truth roots for --check")
    ap.add_argument("--check-cache", type=Path, nargs="*", default=[], help="cached normal studies to test on")
    args = ap.parse_args(argv)
    try:
        if not 0.0 < args.fpr < 0.5:
            raise InputError(EXIT_USAGE, "--fpr must be in (0, 0.5)")
        studies = (cached_normals(args.cache) if args.cache
                   else [(n, deltas_of(r)) for n, r in normal_runs(args.runs, args.cases)])
        if len(studies) < 5:
            raise InputError(EXIT_USAGE, f"{len(studies)} normal studies with evidence found; at least 5 are needed")
        for name, _ in studies:
            print(f"normal study: {name}", flush=True)
        source = (f"{len(studies)} normal studies: aspects-calibrate-evidence "
                  + (f"--cache {' '.join(p.name for p in args.cache)}" if args.cache
                     else "--runs " + " ".join(str(p) for p in args.runs))
                  + f" --fpr {args.fpr:g} --min-delta {args.min_delta:g} --partial-min-delta {args.partial_min_delta:g}"
                  + (f"; {args.note}" if args.note else ""))
        cal = calibrate((dl for _, dl in studies), args.fpr, args.min_delta, args.sigma_floor, source,
                        args.partial_min_delta)
        n_called, n_total, names = false_calls(studies, cal)
        print(f"z_call {cal.z_call:.3f} (one-sided, FPR {args.fpr:g}); min delta {cal.min_delta_hu:g} HU")
        p = cal.partial
        if p is not None:
            print(f"partial z_call {p.z_call:.3f}; min partial delta {p.min_delta_hu:g} HU")
        print("| code | SD about 0 (HU) | partial SD (HU) |\n| --- | --- | --- |")
        for code in REGION_CODES:
            print(f"| {code} | {cal.sigma_hu[code]:.2f} | {'' if p is None else f'{p.sigma_hu[code]:.2f}'} |")
        print(f"calibration set: {n_called} of {n_total} regions called ({', '.join(names) or 'none'})")
        if args.check or args.check_cache:
            held = (cached_normals(args.check_cache) if args.check_cache
                    else [(n, deltas_of(r)) for n, r in normal_runs(args.check, args.check_cases)])
            c, t, names = false_calls(held, cal)
            print(f"held-out normals: {c} of {t} regions called in {len(held)} studies ({', '.join(names) or 'none'})")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = cal.to_json()
        # The mask check is calibrated by its own tool (aspects_research.tools.mask_check_compare): kept.
        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        if old.get("mask_check") is not None:
            doc["mask_check"] = old["mask_check"]
            print(f"kept the mask_check of {args.out}")
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out}")
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
