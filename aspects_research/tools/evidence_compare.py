"""Compare region-evidence statistics on cached studies (aspects-evidence-cache).

    aspects-evidence-compare --cache DIR --fit CASE ... [--check CASE ...] [--eval CASE ...]
        [--inject] [--fpr 0.01] [--stats NAME ...]

For each candidate statistic (``STATS``; ``--stats`` picks some): calibrate on the ``--fit``
normals (aspects.region_evidence.calibrate: per-code spread about 0, one-sided threshold for the
false-positive rate per region, the statistic's HU floor), count calls on the held-out
``--check`` normals, and on ``--eval`` studies combine the calls with the cached voxel-mask
involvement exactly as the app does (involved = mask rule or evidence call; not-assessable
regions count as not involved) to give region sensitivity by HU drop, specificity, and the
regions called / ASPECTS points lost on controls. ``--inject`` adds synthetic partial-region
hypodensities (2-5 HU over 10-100 % of a region, one region of one side at a time) to the
``--check`` normals and reports the evidence-alone detection rate (a power study on real
anatomy that needs no phantom truth). CASE is a case name or a glob of ``DIR/<case>.npz`` stems.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from aspects.asymmetry import _smooth_inside, difference_map
from aspects.labels import REGION_CODES, SIDES, label_value
from aspects.model_io import mirror
from aspects.region_evidence import (Calibration, calibrate, evidence_calls, region_deltas, score_deltas, tail_skew,
                                     trimmed_mean)
from aspects_research.tools.evidence_cache import load_cached

Deltas = Dict[str, Dict[str, tuple]]
HU_BINS = (("2-3 HU", 2.0, 3.0), ("3-4 HU", 3.0, 4.0), ("4-5 HU", 4.0, 5.0), (">= 5 HU", 5.0, 99.0))
MIN_VOXELS = 50


def _tail_mean(v: np.ndarray, q: float, upper: bool) -> float:
    k = max(1, int(round(q * v.size)))
    part = np.partition(v, v.size - k)[v.size - k:] if upper else np.partition(v, k - 1)[:k]
    return float(part.mean())


def tail_sum(q: float) -> Callable[[np.ndarray], float]:
    """Mean of the highest q plus mean of the lowest q (0 for any symmetric spread)."""
    return lambda v: _tail_mean(v, q, True) + _tail_mean(v, q, False)


def skew_of(q: float) -> Callable[[np.ndarray], float]:
    """The app's :func:`tail_skew` with tail fraction ``q``."""
    return lambda v: tail_skew(v, q)


def quant_sum(q: float) -> Callable[[np.ndarray], float]:
    return lambda v: float(np.quantile(v, 1 - q) + np.quantile(v, q))


@dataclass(frozen=True)
class Stat:
    name: str
    fn: Callable[[np.ndarray], float]
    extra_sigma_vox: float  # further smoothing of the difference map inside the usable voxels
    min_delta: float


STATS: Dict[str, Stat] = {s.name: s for s in [
    Stat("trimmed_mean", trimmed_mean, 0.0, 2.0),
    Stat("trimmed_mean_1.5", trimmed_mean, 0.0, 1.5),
    Stat("tailsum_q0.1", tail_sum(0.1), 0.0, 1.5),
    Stat("tailsum_q0.2", tail_sum(0.2), 0.0, 1.5),
    Stat("tailsum_q0.3", tail_sum(0.3), 0.0, 1.5),
    Stat("tailsum_q0.2_x1", tail_sum(0.2), 1.0, 1.5),
    Stat("tailsum_q0.2_x2", tail_sum(0.2), 2.0, 1.5),
    Stat("tailsum_q0.1_x2", tail_sum(0.1), 2.0, 1.5),
    Stat("quantsum_q0.2", quant_sum(0.2), 0.0, 1.5),
    Stat("quantsum_q0.15_x1", quant_sum(0.15), 1.0, 1.5),
    Stat("quantsum_q0.2_m3", quant_sum(0.2), 0.0, 3.0),
    Stat("quantsum_q0.15", quant_sum(0.15), 0.0, 1.5),
    Stat("skew_q0.2", skew_of(0.2), 0.0, 1.0),
    Stat("skew_q0.15", skew_of(0.15), 0.0, 1.0),
    Stat("skew_q0.2_x1", skew_of(0.2), 1.0, 1.0),
]}


def smoothed(diff: np.ndarray, usable: np.ndarray, sigma: float) -> np.ndarray:
    """``diff`` smoothed by ``sigma`` voxels inside ``usable`` (the app's normalised convolution)."""
    return diff if sigma <= 0 else _smooth_inside(diff, usable, sigma)


def study_diff(d: dict) -> np.ndarray:
    """The app's difference map (cached)."""
    return d["difference"]


def deltas(stat: Stat, diff: np.ndarray, usable: np.ndarray, labels: np.ndarray) -> Deltas:
    diff = smoothed(diff, usable, stat.extra_sigma_vox)
    out: Deltas = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            v = diff[(labels == label_value(side, code)) & usable].astype(np.float64)
            out[side][code] = (stat.fn(v) if v.size >= MIN_VOXELS else None, int(v.size))
    return out


def usable_of(d: dict) -> np.ndarray:
    return d["comparable"] & ~d["explained"]


def calls_of(stat: Stat, cal: Calibration, dl: Deltas) -> Dict[str, Dict[str, bool]]:
    return evidence_calls(score_deltas(dl, cal), cal)


def hu_bin(hu: float) -> Optional[str]:
    return next((n for n, lo, hi in HU_BINS if lo <= hu < hi), None)


Calls = Dict[str, Dict[str, bool]]


def evaluate(studies: Dict[str, dict], calls: Dict[str, Calls]) -> dict:
    pos: Dict[str, List[Tuple[bool, bool, bool]]] = {n: [] for n, _, _ in HU_BINS}
    neg = [0, 0, 0, 0]  # regions, called (combined), called by evidence alone, called by mask
    ctrl_called: List[str] = []
    ctrl_points = 0
    for name, d in studies.items():
        t = d["meta"]["truth"]
        ev = calls[name]
        mk = d["meta"]["mask_involved"]
        lost = 0
        for s in SIDES:
            tinv = set((t.get("involved") or {}).get(s) or ())
            for c in REGION_CODES:
                m = bool(mk[s][c])
                e = bool(ev[s][c]) and mk[s][c] is not None
                if c in tinv:
                    b = hu_bin(float(t.get("hu_drop") or 0.0))
                    if b:
                        pos[b].append((m or e, m, e))
                else:
                    neg[0] += 1
                    neg[1] += m or e
                    neg[2] += e and not m
                    neg[3] += m
                if t["kind"] != "acute" and (m or e):
                    lost += 1
                    ctrl_called.append(f"{name[-4:]}:{t.get('anatomy', '?')[:3]}:{s[0].upper()}{c}{'' if m else '(ev)'}")
        ctrl_points += lost
    sens = {b: (sum(p[0] for p in v), sum(p[1] for p in v), len(v)) for b, v in pos.items()}
    return {"sens": sens, "neg": neg, "ctrl_points": ctrl_points, "ctrl_called": ctrl_called}


def false_calls(calls: Dict[str, Calls]) -> Tuple[int, int, List[str]]:
    k, n, names = 0, 0, []
    for name, ev in calls.items():
        for s in SIDES:
            for c in REGION_CODES:
                n += 1
                if ev[s][c]:
                    k += 1
                    names.append(f"{name[-4:]} {s[0].upper()}{c}")
    return k, n, names


def lesion_in(labels: np.ndarray, usable: np.ndarray, value: int, fraction: float, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A compact chunk of ``fraction`` of the region: its voxels nearest a random region voxel."""
    reg = labels == value
    pts = np.argwhere(reg & usable)
    if len(pts) < MIN_VOXELS:
        return None
    allpts = np.argwhere(reg)
    seed = pts[rng.integers(len(pts))]
    dist = np.linalg.norm(allpts - seed, axis=1)
    k = max(1, int(round(fraction * len(allpts))))
    sel = allpts[np.argsort(dist)[:k]]
    out = np.zeros(labels.shape, np.float32)
    out[tuple(sel.T)] = 1.0
    return out


def app_caller(cal: Calibration) -> Callable[[np.ndarray, str, str], bool]:
    """Whether the app's statistics and call rule (``cal``) call one region from its values."""
    def called(v: np.ndarray, side: str, code: str) -> bool:
        ok = v.size >= MIN_VOXELS
        dl: Deltas = {s: {c: (None, 0, None) for c in REGION_CODES} for s in SIDES}
        dl[side][code] = (trimmed_mean(v), int(v.size), tail_skew(v)) if ok else (None, int(v.size), None)
        return calls_from_deltas(cal, dl)[side][code]
    return called


def stat_caller(stat: Stat, cal: Calibration) -> Callable[[np.ndarray, str, str], bool]:
    def called(v: np.ndarray, side: str, code: str) -> bool:
        dl: Deltas = {s: {c: (None, 0) for c in REGION_CODES} for s in SIDES}
        dl[side][code] = (stat.fn(v), int(v.size))
        return calls_of(stat, cal, dl)[side][code]
    return called


def calls_from_deltas(cal: Calibration, dl: Deltas) -> Calls:
    return evidence_calls(score_deltas(dl, cal), cal)


def inject(stat: Stat, cal: Calibration, studies: Dict[str, dict], drops: Sequence[float],
           fractions: Sequence[float], per_study: int, seed: int = 0) -> Dict[Tuple[float, float], List[int]]:
    """Per (drop, fraction): one 0/1 per injected lesion (the same lesions for every statistic:
    the random draws do not depend on it)."""
    return inject_with(stat_caller(stat, cal), stat.extra_sigma_vox, studies, drops, fractions, per_study, seed)


def inject_with(called: Callable[[np.ndarray, str, str], bool], extra_sigma: float, studies: Dict[str, dict],
                drops: Sequence[float], fractions: Sequence[float], per_study: int,
                seed: int = 0) -> Dict[Tuple[float, float], List[int]]:
    """Per (drop, fraction): one 0/1 per injected lesion (the same lesions for every caller)."""
    rng = np.random.default_rng(seed)
    res: Dict[Tuple[float, float], List[int]] = {}
    for d in studies.values():
        usable = usable_of(d)
        for _ in range(per_study):
            side, code = SIDES[rng.integers(2)], REGION_CODES[rng.integers(10)]
            for f in fractions:
                les = lesion_in(d["labels"], usable, label_value(side, code), f, rng)
                if les is None:
                    continue
                # The difference map is linear in the image for fixed masks: the lesion's own map
                # (image darkened, counterpart darkened at the mirror image) scales with the drop.
                unit = difference_map(les, d["brain"], 1.25, contra=(mirror(les).astype(np.float32), d["contra_brain"]))
                for drop in drops:
                    diff = smoothed(d["difference"] - drop * unit, usable, extra_sigma)
                    v = diff[(d["labels"] == label_value(side, code)) & usable].astype(np.float64)
                    hit = called(v, side, code)
                    res.setdefault((drop, f), []).append(int(hit))
    return res


def print_eval(r: dict) -> None:
    print("  sens (combined / mask alone / n): " + "; ".join(f"{b} {a}/{m}/{t}" for b, (a, m, t) in r["sens"].items()))
    nr, nc, ne, nm = r["neg"]
    print(f"  spec combined {1 - nc / max(nr, 1):.3f} (mask alone {1 - nm / max(nr, 1):.3f}; evidence-only false calls {ne} of {nr});"
          f" control regions called {r['ctrl_points']}: {' '.join(r['ctrl_called'])}", flush=True)


def print_inject(inj: Dict[Tuple[float, float], List[int]]) -> None:
    fr = sorted({f for _, f in inj})
    print("  injected (evidence alone), rows HU drop, cols fraction " + " ".join(f"{f:g}" for f in fr))
    for drop in sorted({d_ for d_, _ in inj}):
        print(f"   {drop:g} HU: " + " ".join(f"{sum(inj[(drop, f)])}/{len(inj[(drop, f)])}" for f in fr), flush=True)


def _pick(cache: Path, patterns: Sequence[str]) -> List[Path]:
    files = sorted(p for p in cache.glob("*.npz") if not p.name.endswith(".part.npz"))
    return [p for p in files if any(fnmatch.fnmatch(p.stem, pat) for pat in patterns)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--fit", nargs="+", required=True, help="normal cases to calibrate on")
    ap.add_argument("--check", nargs="*", default=[], help="held-out normal cases")
    ap.add_argument("--eval", nargs="*", default=[], help="cases with truth to score")
    ap.add_argument("--stats", nargs="*", default=list(STATS))
    ap.add_argument("--calibration", type=Path, nargs="*", default=[],
                    help="instead of --stats: the app's statistics and call rule with these calibration files")
    ap.add_argument("--fpr", type=float, default=0.01)
    ap.add_argument("--inject", action="store_true")
    ap.add_argument("--inject-per-study", type=int, default=6)
    ap.add_argument("--json", type=Path, help="write all figures here")
    args = ap.parse_args(argv)
    load = lambda pats: {p.stem: load_cached(p) for p in _pick(args.cache, pats)}  # noqa: E731
    fit, check, ev = load(args.fit), load(args.check), load(args.eval)
    print(f"fit {len(fit)}, check {len(check)}, eval {len(ev)} studies", flush=True)
    report = {}
    sets = {"fit": fit, "check": check, "eval": ev}
    for path in args.calibration:
        cal = Calibration.from_json(json.loads(path.read_text()))
        app_calls = {which: {n_: calls_from_deltas(cal, region_deltas(d["difference"], usable_of(d), d["labels"]))
                             for n_, d in sets[which].items()} for which in sets}
        rep: Dict[str, object] = {"fit_calls": false_calls(app_calls["fit"])[:2], "check_calls": false_calls(app_calls["check"])}
        print(f"## {path}: fit calls {rep['fit_calls']}; check calls {rep['check_calls']}", flush=True)
        if ev:
            r = evaluate(ev, app_calls["eval"])
            rep["eval"] = r
            print_eval(r)
        if args.inject and check:
            inj: Dict[Tuple[float, float], List[int]] = inject_with(app_caller(cal), 0.0, check, (2.0, 3.0, 4.0, 5.0), (0.1, 0.2, 0.35, 0.6, 1.0), args.inject_per_study)
            rep["inject"] = {f"{a}|{b}": [sum(v), len(v)] for (a, b), v in inj.items()}
            print_inject(inj)
        report[str(path)] = rep
    if args.calibration:
        args.stats = []
    dl_cache: Dict[Tuple[str, str], Dict[str, Deltas]] = {}

    def dls(sname: str, which: str) -> Dict[str, Deltas]:
        if (sname, which) not in dl_cache:
            st = STATS[sname]
            dl_cache[(sname, which)] = {n_: deltas(st, study_diff(d), usable_of(d), d["labels"])
                                        for n_, d in sets[which].items()}
        return dl_cache[(sname, which)]

    for spec in args.stats:
        parts = spec.split("+")  # "a+b": called when either is, each calibrated at half the rate
        fpr = args.fpr / len(parts)
        cals = {pn: calibrate(dls(pn, "fit").values(), fpr, STATS[pn].min_delta, 0.25, pn) for pn in parts}

        def calls(which: str, parts: List[str] = parts, cals: Dict[str, Calibration] = cals) -> Dict[str, Calls]:
            out: Dict[str, Calls] = {}
            for n_ in sets[which]:
                per = [calls_of(STATS[pn], cals[pn], dls(pn, which)[n_]) for pn in parts]
                out[n_] = {s: {c: any(p[s][c] for p in per) for c in REGION_CODES} for s in SIDES}
            return out

        k, n, _ = false_calls(calls("fit"))
        line = f"## {spec}: " + ", ".join(f"{pn} z_call {cal.z_call:.2f} sigma {min(cal.sigma_hu.values()):.2f}-{max(cal.sigma_hu.values()):.2f}" for pn, cal in cals.items()) + f"; fit calls {k}/{n}"
        rep = {"cal": {pn: cal.to_json() for pn, cal in cals.items()}, "fit_calls": [k, n]}
        if check:
            k, n, names = false_calls(calls("check"))
            line += f"; check calls {k}/{n} {names}"
            rep["check_calls"] = [k, n, names]
        print(line, flush=True)
        if ev:
            r = evaluate(ev, calls("eval"))
            print_eval(r)
            rep["eval"] = r
        if args.inject and check:
            inj = {}
            for pn in parts:
                one = inject(STATS[pn], cals[pn], check, (2.0, 3.0, 4.0, 5.0), (0.1, 0.2, 0.35, 0.6, 1.0), args.inject_per_study)
                inj = one if not inj else {key: [max(a, b) for a, b in zip(inj[key], one[key])] for key in inj}
            rep["inject"] = {f"{a}|{b}": [sum(v), len(v)] for (a, b), v in inj.items()}
            print_inject(inj)
        report[spec] = rep
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
