"""Candidate region-call rules re-applied to the app's own aspects.json (docs/results_v2.md, session 16).

    python -m aspects_research.tools.region_rule_sweep --set /work/data/v2/ph_val:RUNS [--set ...]

Every region of aspects.json carries what the rules need: its mask fraction (``infarct_fraction``),
what called it (``involved_by``) and its evidence (``delta_hu``, ``z``, ``partial_z``). So a rule that
only keeps or adds calls from those values is scored from one run of the app, as
``aspects-evaluate`` counts (hemisphere ASPECTS exact / within 1, region sensitivity at 3-4 and
>= 5 HU, specificity, ASPECTS points lost on controls). Printed per set: the shipped calls
(equal to ``aspects-evaluate``'s figures) with the sum of absolute hemisphere ASPECTS errors (the
selection criterion on val), where the wrong calls are by mask fraction, then a grid of the two
rules tried in session 16 (the first is the shipped ``mask_support`` of config/region_evidence.json,
which the runs of the app already apply; re-applied to runs made without it, it gives the app's
calls):

- ``mask-support F d``: a call by the mask alone whose fraction is below F stands only where the
  region's whole-region difference to its mirror is at least d HU;
- ``joint d z pz``: a region is also called where its whole-region difference is at least d HU,
  its z at least z and its partial-region score at least pz.

Then the marginal-call bands (session 17): for each band of mask fractions, the share of
hemispheres whose true ASPECTS lies in the range the app would report (``aspects_range``: every
marginal call flipped, :func:`aspects.scoring.marginal_call`) and the range's mean width; the
shipped band is the widest coverage on val at a mean width of at most half a point (ties: the
narrower). Where the runs' aspects.json carry ``aspects_range``, the shipped band's re-computed
ranges are checked against them.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from aspects.labels import REGION_CODES, SIDES
from aspects.scoring import DEFAULT_INVOLVEMENT_FRACTION, MARGINAL_BAND, marginal_call, range_over_marginal
from aspects_research.tools.evaluate import region_bin
from aspects_research.tools.volume_loss_sweep import is_control, studies

FRACTION_BANDS = (0.0, 1e-9, 0.05, 0.10, 0.20, 0.30, 1.01)


@dataclass(frozen=True)
class Region:
    """One region of one study: truth, the app's call and the values the rules read."""

    case: str
    side: str
    code: str
    truth: bool
    called: bool
    by: Tuple[str, ...]
    fraction: float
    delta_hu: Optional[float]
    z: Optional[float]
    partial_z: Optional[float]
    hu_drop: float
    acute: bool
    control: bool
    withdrawn: bool = False
    reported_range: Optional[Tuple[int, int]] = None  # the hemisphere's aspects_range in aspects.json


def regions_of(cases: Path, runs: Path) -> List[Region]:
    """Every assessable region of every study the app finished."""
    out = []
    for case, truth, doc in studies(cases, runs):
        for side in SIDES:
            reported = (doc.get("aspects_range") or {}).get(side)
            for code in REGION_CODES:
                r = doc["regions"][side][code]
                if r.get("assessable", True) is False:
                    continue
                ev = r.get("evidence") or {}
                out.append(Region(case, side, code, code in truth["involved"][side], bool(r["involved"]),
                                  tuple(r.get("involved_by") or ()), float(r["infarct_fraction"]), ev.get("delta_hu"),
                                  ev.get("z"), ev.get("partial_z"), float(truth.get("hu_drop") or 0.0),
                                  truth["kind"] == "acute", is_control(truth), bool(r.get("withdrawn_calls")),
                                  None if reported is None else (int(reported[0]), int(reported[1]))))
    return out


Rule = Callable[[Region], bool]


def shipped(r: Region) -> bool:
    return r.called


def mask_support(min_fraction: float, min_delta_hu: float) -> Rule:
    def rule(r: Region) -> bool:
        if r.by == ("mask",) and r.fraction < min_fraction:  # unmeasurable: the call stands, as in the app
            return r.delta_hu is None or r.delta_hu >= min_delta_hu
        return r.called
    return rule


def joint(min_delta_hu: float, min_z: float, min_partial_z: float) -> Rule:
    def rule(r: Region) -> bool:
        agree = (r.delta_hu is not None and r.z is not None and r.partial_z is not None
                 and r.delta_hu >= min_delta_hu and r.z >= min_z and r.partial_z >= min_partial_z)
        return r.called or agree
    return rule


def figures(regions: Sequence[Region], rule: Rule) -> Dict[str, float]:
    """The issue-13 region and hemisphere figures with ``rule``'s calls."""
    calls = [rule(r) for r in regions]
    hemis: Dict[Tuple[str, str], List[int]] = {}
    for r, c in zip(regions, calls):
        h = hemis.setdefault((r.case, r.side), [10, 10, 0])
        h[0] -= r.truth
        h[1] -= c
        h[2] = r.control
    errors = [abs(t - p) for t, p, _ in hemis.values()]
    rate = lambda hits: round(sum(hits) / len(hits), 4) if hits else float("nan")  # noqa: E731
    return {
        "exact": rate([e == 0 for e in errors]),
        "within1": rate([e <= 1 for e in errors]),
        "sum_abs_error": sum(errors),
        "sens_3_4": rate([c for r, c in zip(regions, calls) if r.acute and r.truth and region_bin(r.hu_drop) == "3-4"]),
        "sens_5": rate([c for r, c in zip(regions, calls) if r.acute and r.truth and region_bin(r.hu_drop) == ">=5"]),
        "specificity": rate([not c for r, c in zip(regions, calls) if not r.truth]),
        "control_points": sum(t - p for t, p, control in hemis.values() if control),
        "true_calls": sum(c and r.truth for r, c in zip(regions, calls)),
        "false_calls": sum(c and not r.truth for r, c in zip(regions, calls)),
    }


def range_figures(regions: Sequence[Region], band: Tuple[float, float]) -> Dict[str, float]:
    """Coverage of the true hemisphere ASPECTS by the range with the marginal calls of ``band``
    (fractions of a region) flipped, its mean width, and how many hemispheres' re-computed range
    differs from the one their aspects.json reports (where it reports one)."""
    hemis: Dict[Tuple[str, str], List[Region]] = {}
    for r in regions:
        hemis.setdefault((r.case, r.side), []).append(r)
    covered = width = differ = 0
    full = [rs for rs in hemis.values() if len(rs) == len(REGION_CODES)]  # a side with a region not assessable has no ASPECTS
    for rs in full:
        truth, shown = 10 - sum(r.truth for r in rs), 10 - sum(r.called for r in rs)
        marginal = [r for r in rs if marginal_call(r.fraction, "evidence" in r.by, r.withdrawn, band)]
        low, high = range_over_marginal(shown, [r.called for r in marginal])
        covered += low <= truth <= high
        width += high - low
        differ += rs[0].reported_range is not None and rs[0].reported_range != (low, high)
    n = max(len(full), 1)
    return {"coverage": round(covered / n, 4), "mean_width": round(width / n, 3), "hemispheres": len(full),
            "reported_ranges_differing": differ}


# Candidate bands: the edges of the error table (session 16), in fractions of a region.
MARGINAL_CANDIDATES = tuple((lo, hi) for lo in (1e-9, 0.03, 0.05, 0.07) for hi in (0.15, 0.20, 0.25, 0.30))


def error_bands(regions: Sequence[Region]) -> List[Tuple[str, int, int, int]]:
    """(fraction band, regions, wrong calls, of them truly involved) of the shipped calls."""
    out = []
    for lo, hi in zip(FRACTION_BANDS[:-1], FRACTION_BANDS[1:]):
        inside = [r for r in regions if lo <= r.fraction < hi]
        wrong = [r for r in inside if r.called != r.truth]
        name = "0" if hi <= 1e-9 else f"{lo:.2f}-{min(hi, 1.0):.2f}"
        out.append((name, len(inside), len(wrong), sum(r.truth for r in wrong)))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, metavar="CASES:RUNS",
                    help="synthetic studies with truth and the app's output root")
    args = ap.parse_args(argv)
    for spec in args.set:
        cases, runs = (Path(p) for p in spec.split(":", 1))
        regions = regions_of(cases, runs)
        print(f"== {cases} ({len({r.case for r in regions})} studies, {len(regions)} regions)")
        print("shipped", figures(regions, shipped))
        print("wrong calls by mask fraction (band, regions, wrong, of them truly involved):", error_bands(regions))
        for f, d in itertools.product((0.15, 0.2, 0.25, 0.3), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)):
            print(f"mask-support {f} {d}", figures(regions, mask_support(f, d)))
        for d, z, pz in itertools.product((0.7, 0.8, 0.9, 1.0), (3.0, 3.5), (4.0, 5.0, 6.0)):
            print(f"joint {d} {z} {pz}", figures(regions, joint(d, z, pz)))
        band = (MARGINAL_BAND[0] * DEFAULT_INVOLVEMENT_FRACTION, MARGINAL_BAND[1] * DEFAULT_INVOLVEMENT_FRACTION)
        print(f"aspects range, shipped band {band[0]:.2f}-{band[1]:.2f}", range_figures(regions, band))
        for lo, hi in MARGINAL_CANDIDATES:
            print(f"aspects range, band {lo:.2f}-{hi:.2f}", range_figures(regions, (lo, hi)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
