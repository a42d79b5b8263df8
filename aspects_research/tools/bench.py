"""Speed and memory of the app on synthetic studies, per stage, per slice thickness.

    aspects-bench [--cases N] [--thickness 5 1] [--models models] [--out DIR] [--subprocess] [--report docs/performance.md]
    aspects-bench --compare before=OUT1/bench.json after=OUT2/bench.json     # earlier benches side by side

Makes N acute phantoms per thickness (aspects-make-phantoms, seeded; default a 5 mm and a thin
0.625 mm study) and runs the app's stages on each in this process with the models loaded once
(:class:`aspects.pipeline.Pipeline`, a warm server's per-study time), or with ``--subprocess`` as
``python app.py`` (wall time with process start, the child's peak memory from wait4). Prints
median / min / max of the per-stage timings of aspects.json. A fixed reference CPU workload
(:func:`reference_workload`) timed before and after the runs divides the wall times, so figures
from a noisy or different machine compare. The region path is timed both ways on the same input:
the region model (when models/aspects_regions/ holds one) and the atlas warp (no models folder).
No figure here is asserted by a test: these are measurements of this machine at this time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository (a source checkout)

from aspects.errors import EXIT_USAGE, InputError  # noqa: E402
from aspects_research.tools.evaluate import (InProcessRunner, Runner, command_line, git_describe, machine_info,  # noqa: E402
                                              machine_line, run_app)

REGION_MODEL = "aspects_regions"
INFARCT_MODEL = "infarct_seg"
MEMORY_TARGET_GB = 6.0  # issue 3: a 5 mm study in <= 60 s and <= 6 GB with the fallbacks
TIME_TARGET_S = 60.0


def reference_workload(repeats: int = 5) -> float:
    """Median seconds of a fixed CPU job shaped like the app's work (3-D filtering, resampling,
    reductions and a small matrix product on a 160^3 float32 volume; numpy/scipy, no I/O)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    vol = rng.normal(30.0, 5.0, (160, 160, 160)).astype(np.float32)
    mat = rng.normal(size=(384, 384))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        smooth = ndi.gaussian_filter(vol, 1.5)
        zoomed = ndi.zoom(smooth, 0.5, order=1)
        mask = ndi.binary_erosion(smooth > 30.0, iterations=2)
        _ = float(np.median(zoomed)) + float(smooth[mask].mean()) + float(np.linalg.norm(mat @ mat))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def has_model(models: Path, name: str) -> bool:
    return (models / name / f"{name}.ts").is_file()


def make_phantoms(out: Path, count: int, seed: int, thickness: float) -> List[Path]:
    """N acute phantoms of one slice thickness, made by the project's generator."""
    cmd = [sys.executable, "-m", "aspects_research.tools.make_phantoms", "--out", str(out), "--count", str(count),
           "--seed", str(seed), "--thickness", f"{thickness:g}", "--kind", "acute"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(EXIT_USAGE, f"aspects-make-phantoms failed ({r.returncode}): {msg}")
    cases = sorted(p for p in out.iterdir() if (p / "dicom").is_dir())
    if len(cases) < count:
        raise InputError(EXIT_USAGE, f"aspects-make-phantoms made {len(cases)} of {count} cases in {out}")
    return cases[:count]


def read_timings(out_dir: Path) -> Dict[str, float]:
    try:
        return {k: float(v) for k, v in (json.loads((out_dir / "aspects.json").read_text()).get("timings_s") or {}).items()}
    except (OSError, ValueError):
        return {}


def stats(values: Sequence[float]) -> Dict[str, Optional[float]]:
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": int(v.size), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def region_stage(timings: Dict[str, float]) -> Optional[str]:
    """The aspects.json stage key of the region segmenter (named 'region...' by the app)."""
    return next((k for k in timings if k.lower().startswith("region")), None)


def bench_thickness(cases: List[Path], out: Path, models: Path, timeout_s: float, runner: Runner = run_app) -> dict:
    runs = []
    for k, case in enumerate(cases, 1):
        od = out / "runs" / case.name
        rr = runner(case / "dicom", od, models, out / "console" / f"{case.name}.txt", timeout_s)
        t = read_timings(od) if rr.exit_code == 0 else {}
        runs.append({"case": case.name, "exit_code": rr.exit_code, "wall_s": rr.wall_s, "peak_rss_mb": rr.peak_rss_mb,
                     "timings_s": t, "error": None if rr.exit_code == 0 else rr.last_line})
        print(f"  [{k}/{len(cases)}] {case.name}: exit {rr.exit_code}, {rr.wall_s:.1f} s, peak RSS {rr.peak_rss_mb:.0f} MB"
              + ("" if rr.exit_code == 0 else f" - {rr.last_line}"), flush=True)
    ok = [r for r in runs if r["exit_code"] == 0]
    stages: List[str] = []
    for r in ok:
        stages += [s for s in r["timings_s"] if s not in stages]
    return {
        "runs": runs, "n_ok": len(ok),
        "stages": {s: stats([r["timings_s"].get(s) for r in ok]) for s in stages},
        "wall_s": stats([r["wall_s"] for r in ok]),
        "peak_rss_mb": stats([r["peak_rss_mb"] for r in ok]),
    }


def compare_region_paths(case: Path, main_run: dict, out: Path, models: Path, timeout_s: float,
                         runner: Runner = run_app) -> dict:
    """Region stage time with the model and with the atlas SyN fallback on the same input.

    The benchmark run of ``case`` already timed the path the models folder selects; only the
    other one is run again (the atlas path: the app with an empty models folder).
    """
    t = main_run["timings_s"]
    stage = region_stage(t)
    this = {"exit_code": main_run["exit_code"], "stage": stage, "region_s": t.get(stage) if stage else None,
            "total_wall_s": main_run["wall_s"], "peak_rss_mb": main_run["peak_rss_mb"]}
    if not has_model(models, REGION_MODEL):
        return {"case": case.name, "model": None, "atlas": this}
    empty = out / "no_models"
    empty.mkdir(parents=True, exist_ok=True)
    od = out / "region_atlas" / case.name
    rr = runner(case / "dicom", od, empty, out / "console" / f"region_atlas_{case.name}.txt", timeout_s)
    ta = read_timings(od)
    sa = region_stage(ta)
    atlas = {"exit_code": rr.exit_code, "stage": sa, "region_s": ta.get(sa) if sa else None,
             "total_wall_s": rr.wall_s, "peak_rss_mb": rr.peak_rss_mb}
    print(f"  atlas region path: exit {rr.exit_code}, region stage {_fmt(atlas['region_s'])} s, total {rr.wall_s:.1f} s",
          flush=True)
    return {"case": case.name, "model": this, "atlas": atlas}


def _fmt(v: Optional[float], d: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def table(result: dict) -> List[str]:
    L = []
    for th, b in result["thickness"].items():
        L += [f"### {th} mm slices ({b['n_ok']} of {len(b['runs'])} runs succeeded)", "",
              "| stage | median (s) | min (s) | max (s) |", "| --- | --- | --- | --- |"]
        L += [f"| {s} | {_fmt(v['median'])} | {_fmt(v['min'])} | {_fmt(v['max'])} |" for s, v in b["stages"].items()]
        w, m = b["wall_s"], b["peak_rss_mb"]
        how = "child process" if result.get("mode") == "subprocess" else "in-process, warm"
        L += [f"| **total wall time ({how})** | {_fmt(w['median'])} | {_fmt(w['min'])} | {_fmt(w['max'])} |"]
        ref = result.get("reference_s")
        if ref:
            L += [f"| **wall time / reference workload** | {_fmt(w['median'] / ref if w['median'] else None)} | "
                  f"{_fmt(w['min'] / ref if w['min'] else None)} | {_fmt(w['max'] / ref if w['max'] else None)} |"]
        if result.get("mode") != "subprocess" and w["median"]:  # one warm process, one study after another
            L += [f"| **studies per hour (3600 / wall time)** | {3600.0 / w['median']:.0f} | {3600.0 / w['max']:.0f} | "
                  f"{3600.0 / w['min']:.0f} |"]
        L += [f"| **peak RSS (MB)** | {_fmt(m['median'], 0)} | {_fmt(m['min'], 0)} | {_fmt(m['max'], 0)} |", ""]
        failed = [r for r in b["runs"] if r["exit_code"] != 0]
        if failed:
            L += ["Failed: " + "; ".join(f"{r['case']} exit {r['exit_code']} ({r['error']})" for r in failed), ""]
    rc = result.get("region_paths")
    if rc:
        L += [f"### Region path on the same input ({rc['case']})", "", "| method | region stage (s) | whole run (s) | peak RSS (MB) |",
              "| --- | --- | --- | --- |"]
        for method in ("model", "atlas"):
            r = rc.get(method)
            if r is None:
                L.append(f"| {method} | no {REGION_MODEL} model in the models folder | | |")
            else:
                L.append(f"| {method} | {_fmt(r['region_s'])} | {_fmt(r['total_wall_s'])} | {_fmt(r['peak_rss_mb'], 0)} |")
        L.append("")
    return L


def to_markdown(result: dict) -> str:
    meta = result["meta"]
    L = ["# Performance", "",
         f"Measured by `{meta['command']}` on {meta['date']} (git {meta['git']}).",
         f"Machine: {machine_line(meta['machine'])}.",
         f"Models folder: `{meta['models']}` (region model: {'yes' if meta['region_model'] else 'no, atlas SyN fallback'}; "
         f"infarct model: {'yes' if meta['infarct_model'] else 'no, asymmetry fallback'}).",
         f"Targets (issue 3): a 5 mm study end to end in <= {TIME_TARGET_S:g} s and <= {MEMORY_TARGET_GB:g} GB peak memory "
         "on the 2-core CPU with the fallbacks.", ""]
    if meta.get("note"):
        L += [f"Note: {meta['note']}", ""]
    if result.get("mode") == "subprocess":
        L += ["Per-stage times are the app's own `timings_s` from aspects.json; the total is the wall time of the "
              "child process (interpreter start, imports and writing included); peak RSS is the child's maximum "
              "resident set (wait4 `ru_maxrss`).", ""]
    else:
        L += ["Per-stage times are the app's own `timings_s` from aspects.json; the total is the wall time of one "
              "study through the app's stages in one process that keeps the models and atlas loaded (a warm "
              "server; no interpreter start or imports); peak RSS is that study's (the process's high-water mark reset "
              "before it, `aspects.memory`: models and atlas included, earlier studies not).", ""]
    if result.get("reference_s"):
        L += [f"Reference CPU workload (`aspects_research.tools.bench.reference_workload`, timed before and after the runs): "
              f"{result['reference_s']:.2f} s (before {result['reference_before_s']:.2f} s, after "
              f"{result['reference_after_s']:.2f} s); 'wall time / reference' divides by it, so a machine twice as "
              "slow or twice as loaded gives about the same ratio.", ""]
    L += table(result)
    return "\n".join(L) + "\n"


def compare(labelled: Sequence[str]) -> List[str]:
    """Markdown rows of several benches side by side (``LABEL=OUT/bench.json`` each): per slice
    thickness, the median wall time, its ratio to that bench's reference workload, studies per
    hour (in-process benches: one warm process) and the median peak RSS."""
    L = ["| bench | mode | slices (mm) | runs | wall time (s), median | wall / reference | studies per hour | "
         "peak RSS (MB) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for item in labelled:
        label, _, path = item.partition("=")
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(EXIT_USAGE, f"--compare {item}: cannot read {path} ({exc})") from exc
        ref, mode = result.get("reference_s"), result.get("mode", "?")
        for th, b in result["thickness"].items():
            w, m = b["wall_s"]["median"], b["peak_rss_mb"]["median"]
            per_hour = f"{3600.0 / w:.0f}" if w and mode != "subprocess" else ""
            L.append(f"| {label} | {mode} | {th} | {b['n_ok']}/{len(b['runs'])} | {_fmt(w)} | "
                     f"{_fmt(w / ref if w and ref else None, 2)} | {per_hour} | {_fmt(m, 0)} |")
    return L


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3, help="phantoms per slice thickness")
    ap.add_argument("--thickness", type=float, nargs="+", default=[5.0, 0.625], help="slice thicknesses (mm)")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=Path("/tmp/aspects_bench"), help="work folder (phantoms, outputs)")
    ap.add_argument("--seed", type=int, default=3000, help="first phantom seed")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per app run before it is killed")
    ap.add_argument("--no-region-compare", action="store_true", help="skip the model-vs-atlas region timing")
    ap.add_argument("--report", type=Path, default=None, help="also write the Markdown report here (e.g. docs/performance.md)")
    ap.add_argument("--note", default="", help="free text for the report (e.g. other load on the machine)")
    ap.add_argument("--subprocess", action="store_true", help="run each study as python app.py (process start "
                    "included, peak memory per run) instead of in this process with the models loaded once")
    ap.add_argument("--keep-heap", action="store_true", help="in-process: do not trim the allocator's free heap "
                    "between studies (aspects.memory.release_heap), to measure what the trim saves")
    ap.add_argument("--compare", nargs="+", metavar="LABEL=BENCH_JSON", help="only print earlier benches' "
                    "bench.json side by side (e.g. before=main/bench.json after=speed/bench.json)")
    args = ap.parse_args(argv)
    if args.compare:
        try:
            print("\n".join(compare(args.compare)))
        except InputError as e:
            print(e.one_line(), file=sys.stderr)
            return e.code
        return 0
    command = "aspects-bench " + command_line(sys.argv[1:] if argv is None else argv)
    runner: Runner = run_app if args.subprocess else InProcessRunner(trim_heap=not args.keep_heap)
    try:
        if args.cases < 1:
            raise InputError(EXIT_USAGE, "--cases must be at least 1")
        if not args.models.is_dir():
            raise InputError(EXIT_USAGE, f"--models {args.models} is not a folder")
        machine = machine_info()
        print(f"machine: {machine_line(machine)}", flush=True)
        result: dict = {"thickness": {}, "region_paths": None, "reference_before_s": reference_workload(),
                        "mode": "subprocess" if args.subprocess else "in-process"}
        print(f"reference CPU workload: {result['reference_before_s']:.2f} s", flush=True)
        first_case = None
        for th in args.thickness:
            work = args.out / f"{th:g}mm"
            t0 = time.perf_counter()
            cases = make_phantoms(work / "phantoms", args.cases, args.seed, th)
            print(f"{th:g} mm: {len(cases)} phantoms in {time.perf_counter() - t0:.0f} s; running the app", flush=True)
            result["thickness"][f"{th:g}"] = bench_thickness(cases, work, args.models, args.timeout, runner)
            first_case = first_case or (cases[0], work, result["thickness"][f"{th:g}"]["runs"][0])
        if not args.no_region_compare and first_case:
            print("region path, model vs atlas SyN:", flush=True)
            result["region_paths"] = compare_region_paths(first_case[0], first_case[2], first_case[1], args.models,
                                                          args.timeout, runner)
        result["reference_after_s"] = reference_workload()
        result["reference_s"] = (result["reference_before_s"] + result["reference_after_s"]) / 2.0
        print(f"reference CPU workload after the runs: {result['reference_after_s']:.2f} s", flush=True)
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return e.code
    result["meta"] = {"command": command, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                      "git": git_describe(), "machine": machine, "models": str(args.models), "note": args.note,
                      "region_model": has_model(args.models, REGION_MODEL), "infarct_model": has_model(args.models, INFARCT_MODEL)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(table(result)))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(to_markdown(result))
        print(f"report: {args.report}")
    print(f"details: {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
