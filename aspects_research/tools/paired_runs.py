"""Two evaluated sets of the same seeds, study by study (docs/results_v2.md, "Atrophy").

    python -m aspects_research.tools.paired_runs --a CASES_A RUNS_A --b CASES_B RUNS_B [--json OUT]

The sets are the same studies made two ways (e.g. ``ph_adult`` and ``ph_elderly``: the same seeds
without and with atrophy), each run by ``aspects-evaluate --run``. For every study present in both
(its ``truth.json`` and the app's ``aspects.json``) it prints the truth and the app's ASPECTS on each
side, the acute volume, the QC's NCC and the flags, marks what changed, and sums up: hemispheres
whose score or truth changed, whose error grew or shrank, points lost on controls, flags gained
and lost, and studies whose NCC fell by more than 0.1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

SIDES = ("left", "right")
NCC_FALL = 0.1


def load(cases: Path, runs: Path) -> Dict[str, Tuple[dict, dict]]:
    """(truth, app result) of every study of ``cases`` that ``runs`` has a result for; a folder
    without studies is a one-line :class:`aspects.errors.InputError` (:func:`evaluate.case_dirs`)."""
    from aspects_research.tools.evaluate import case_dirs

    out = {}
    for case in case_dirs(cases):
        result = runs / case.name / "aspects.json"
        if result.is_file():
            out[case.name] = (json.loads((case / "truth.json").read_text()), json.loads(result.read_text()))
    return out


def compare(a: Dict[str, Tuple[dict, dict]], b: Dict[str, Tuple[dict, dict]]) -> dict:
    """Study-by-study rows and the summary of two loaded sets (:func:`load`)."""
    rows: List[dict] = []
    s = dict(studies=0, hemispheres=0, score_changed=0, truth_changed=0, error_worse=0, error_better=0,
             control_points_a=0, control_points_b=0, ncc_fell=[], flags_gained={}, flags_lost={})
    for name in sorted(set(a) & set(b)):
        (ta, ra), (tb, rb) = a[name], b[name]
        s["studies"] += 1
        for side in SIDES:
            s["hemispheres"] += 1
            s["score_changed"] += ra["aspects"][side] != rb["aspects"][side]
            s["truth_changed"] += ta["aspects"][side] != tb["aspects"][side]
            ea, eb = abs(ra["aspects"][side] - ta["aspects"][side]), abs(rb["aspects"][side] - tb["aspects"][side])
            s["error_worse"] += eb > ea
            s["error_better"] += eb < ea
            if ta["kind"] != "acute":
                s["control_points_a"] += max(0, ta["aspects"][side] - ra["aspects"][side])
            if tb["kind"] != "acute":
                s["control_points_b"] += max(0, tb["aspects"][side] - rb["aspects"][side])
        fa, fb = set(ra.get("flags", [])), set(rb.get("flags", []))
        for flag in fb - fa:
            s["flags_gained"].setdefault(flag, []).append(name)
        for flag in fa - fb:
            s["flags_lost"].setdefault(flag, []).append(name)
        ncc_a, ncc_b = float(ra["qc"]["ncc"]), float(rb["qc"]["ncc"])
        if ncc_b < ncc_a - NCC_FALL:
            s["ncc_fell"].append(name)
        rows.append(dict(study=name, kind=tb["kind"], anatomy=tb.get("anatomy"),
                         truth=[ta["aspects"][x] for x in SIDES] + [tb["aspects"][x] for x in SIDES],
                         app=[ra["aspects"][x] for x in SIDES] + [rb["aspects"][x] for x in SIDES],
                         volume_ml=[ra["infarct_volume_ml"], rb["infarct_volume_ml"]], ncc=[ncc_a, ncc_b],
                         flags=[sorted(fa), sorted(fb)], changed=ra["aspects"] != rb["aspects"] or fa != fb))
    return dict(rows=rows, summary=s)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", nargs=2, type=Path, required=True, metavar=("CASES", "RUNS"), help="the first set")
    ap.add_argument("--b", nargs=2, type=Path, required=True, metavar=("CASES", "RUNS"), help="the second set")
    ap.add_argument("--json", type=Path, help="also write rows and summary here")
    args = ap.parse_args(argv)
    for cases, runs in (args.a, args.b):
        for folder in (cases, runs):
            if not folder.is_dir():
                print(f"error[2]: no folder {folder}")
                return 2
    from aspects_research.tools import one_line_errors

    loaded: List[Dict[str, Tuple[dict, dict]]] = []

    def read_both() -> int:
        loaded.extend((load(*args.a), load(*args.b)))
        return 0

    code = one_line_errors(read_both)
    if code:
        return code
    out = compare(*loaded)
    for r in out["rows"]:
        t, p = r["truth"], r["app"]
        print(f"{r['study']} {r['kind']:13s} {str(r['anatomy']):10s} truth L{t[0]} R{t[1]} / L{t[2]} R{t[3]}  "
              f"app L{p[0]} R{p[1]} / L{p[2]} R{p[3]}  {r['volume_ml'][0]:.1f} / {r['volume_ml'][1]:.1f} ml  "
              f"NCC {r['ncc'][0]:.2f} / {r['ncc'][1]:.2f}  flags {','.join(r['flags'][0]) or '-'} / "
              f"{','.join(r['flags'][1]) or '-'}{'  <--' if r['changed'] else ''}")
    s = out["summary"]
    print(f"{s['studies']} studies in both: of {s['hemispheres']} hemispheres the score changed on {s['score_changed']}, "
          f"the truth on {s['truth_changed']}; error grew on {s['error_worse']}, shrank on {s['error_better']}; "
          f"points lost on controls {s['control_points_a']} / {s['control_points_b']}; "
          f"flags gained {s['flags_gained'] or '-'}, lost {s['flags_lost'] or '-'}; "
          f"NCC fell by > {NCC_FALL}: {s['ncc_fell'] or '-'}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
