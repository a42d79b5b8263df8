"""Evaluate the app's outputs against synthetic studies with known truth.

    aspects-evaluate --cases DIR --runs OUTROOT [--report docs/results] [--run [--subprocess]] [--models models]

DIR/<case_id>/ holds truth.json and truth/{infarct,regions}.nii.gz (aspects-make-phantoms);
OUTROOT/<case_id>/ holds the app's aspects.json and nifti/{infarct,regions}.nii.gz. With --run the
app's stages run on each case first, in this process with the models loaded once
(``--subprocess``: ``python app.py`` per case); one progress line per case, failures counted.
Writes REPORT.json, REPORT.md and PNG figures in <dir of REPORT>/img/eval_*.png; metric
conventions (empty masks, undefined values) are those of aspects_research.metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository (a source checkout)

from aspects_research import agreement as ag  # noqa: E402
from aspects_research import metrics as mt  # noqa: E402
from aspects.errors import EXIT_USAGE, InputError  # noqa: E402
from aspects.labels import FINDINGS, REGION_CODES, SIDES, all_regions  # noqa: E402

LARGE_CORE_ML = 70.0
HU_BINS: Tuple[Tuple[str, float, float], ...] = (
    ("<4", -np.inf, 4.0), ("4-6", 4.0, 6.0), ("6-8", 6.0, 8.0), ("8-10", 8.0, 10.0), (">=10", 10.0, np.inf),
)
FLAG_HAEMORRHAGE = "haemorrhage_suspected"
FLAG_OUTSIDE_MCA = "infarct_outside_mca"
FLAG_OLD_INFARCT = "old_infarct_suspected"
FLAG_LOW_CONFIDENCE = "low_confidence"
APP_OUTPUTS = ("aspects.json", "nifti/infarct.nii.gz", "nifti/regions.nii.gz")
CONTROL_KINDS = ("normal", "old_infarct", "haemorrhage", "leukoaraiosis")
# HU-drop bins of the region-level detection limit (issue 13 targets: 3-4 HU and >= 5 HU).
REGION_HU_BINS: Tuple[Tuple[str, float, float], ...] = (
    ("<2", -np.inf, 2.0), ("2-3", 2.0, 3.0), ("3-4", 3.0, 4.0), ("4-5", 4.0, 5.0), (">=5", 5.0, np.inf),
)
VOLUME_BINS_ML: Tuple[Tuple[str, float, float], ...] = (("< 5 ml", 0.0, 5.0), ("5-25 ml", 5.0, 25.0), (">= 25 ml", 25.0, np.inf))


# ----------------------------------------------------------------------------- running the app
@dataclass(frozen=True)
class RunResult:
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    last_line: str


def run_app(dicom_dir: Path, out_dir: Path, models: Path, console_log: Path, timeout_s: float = 900.0,
            extra_args: Sequence[str] = (), app: Path = ROOT / "app.py") -> RunResult:
    """Run ``app.py`` as a child process; wall time and the child's peak RSS (``wait4``, the
    maximum over the child and its reaped descendants)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for rel in APP_OUTPUTS:  # a stale result must never be read as this run's
        (out_dir / rel).unlink(missing_ok=True)
    console_log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(app), "-i", str(dicom_dir), "-o", str(out_dir), "-m", str(models), *extra_args]
    t0 = time.perf_counter()
    with open(console_log, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        status, rusage = 0, None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen from waiting again
    wall = time.perf_counter() - t0
    lines = [ln for ln in console_log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error[")]
    last = errors[-1] if errors else (lines[-1] if lines else "")
    return RunResult(proc.returncode, wall, rusage.ru_maxrss / 1024.0, last[:200])


class InProcessRunner:
    """Runs the app's stages in this process (:class:`aspects.pipeline.Pipeline`, models and atlas
    loaded once per models folder); called like :func:`run_app`. Peak RSS is this study's: the
    process's high-water mark reset before it (:func:`aspects.memory.reset_peak_rss`; Linux), so
    it includes what the warm process holds (models, atlas) but not earlier studies' peaks."""

    def __init__(self, trim_heap: bool = True) -> None:
        self._pipelines: Dict[Path, Any] = {}
        self.trim_heap = trim_heap  # False: the heap is not trimmed between studies (aspects.serve.serve_one)

    def __call__(self, dicom_dir: Path, out_dir: Path, models: Path, console_log: Path, timeout_s: float = 900.0,
                 extra_args: Sequence[str] = ()) -> RunResult:
        from aspects.memory import peak_rss_mb, reset_peak_rss
        from aspects.serve import serve_one, warm_pipeline

        for rel in APP_OUTPUTS:  # a stale result must never be read as this run's
            (out_dir / rel).unlink(missing_ok=True)
        pipeline = self._pipelines.get(Path(models))
        if pipeline is None:  # warmed before the clock starts: the per-study time of a warm server
            pipeline = self._pipelines[Path(models)] = warm_pipeline(models)
        reset_peak_rss()
        t0 = time.perf_counter()
        code, line, _ = serve_one(pipeline, dicom_dir, out_dir, trim_heap=self.trim_heap)
        last = line or f"done: {out_dir / 'aspects.json'}"
        wall = time.perf_counter() - t0
        console_log.parent.mkdir(parents=True, exist_ok=True)
        console_log.write_text(last + "\n")
        return RunResult(code, wall, peak_rss_mb(), last[:200])


Runner = Callable[..., RunResult]


def machine_info() -> Dict[str, object]:
    """Cores, CPU model, RAM and GPU of this machine, for the figures' captions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    gpu = None
    # Without an NVIDIA driver there is no CUDA device: skip the slow torch import.
    if Path("/proc/driver/nvidia").exists():
        try:
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name(0)
        except Exception:  # torch missing or a broken CUDA set-up: report no GPU
            gpu = None
    return {"cores": os.cpu_count(), "cpu": cpu, "ram_gb": ram_gb, "gpu": gpu, "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "thp": transparent_hugepages(),
            "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE")}


def transparent_hugepages() -> Optional[str]:
    """The kernel's transparent-huge-page policy as ``enabled/defrag`` (e.g. ``madvise/madvise``),
    None where it cannot be read: it decides what NumPy's huge-page advice costs (aspects/memory.py)."""
    base = Path("/sys/kernel/mm/transparent_hugepage")
    try:
        chosen = [re.search(r"\[(\w[\w+]*)\]", (base / f).read_text()) for f in ("enabled", "defrag")]
    except OSError:
        return None
    return "/".join(m.group(1) if m else "?" for m in chosen)


def machine_line(m: Dict[str, object]) -> str:
    line = (f"{m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, GPU: {m['gpu'] or 'none'}, "
            f"load average at start {m['load_avg_1m']}")
    if m.get("thp"):
        line += f", transparent huge pages {m['thp']} (enabled/defrag)"
    if "numpy_madvise_hugepage" in m:
        line += f", NUMPY_MADVISE_HUGEPAGE={m['numpy_madvise_hugepage'] or 'unset'}"
    return line


# ----------------------------------------------------------------------------- reading
def case_dirs(cases: Path) -> List[Path]:
    if not cases.is_dir():
        raise InputError(EXIT_USAGE, f"--cases {cases} is not a folder")
    found = sorted(p for p in cases.iterdir() if (p / "truth.json").is_file())
    if not found:
        raise InputError(EXIT_USAGE, f"no case with a truth.json under {cases} (make them with aspects-make-phantoms)")
    return found


def read_mask(path: Path) -> Tuple[np.ndarray, Tuple[float, ...], tuple]:
    """(z, y, x) array, spacing in the same order, and the grid (size, spacing, origin, direction)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    grid = (img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    return sitk.GetArrayFromImage(img), tuple(img.GetSpacing()[::-1]), grid


def grid_difference(a: tuple, b: tuple, tol: float = 1e-3) -> Optional[str]:
    """None when two (size, spacing, origin, direction) grids agree, else what differs."""
    for name, x, y in zip(("size", "spacing", "origin", "direction"), a, b):
        if len(x) != len(y) or not np.allclose(x, y, atol=tol):
            return f"{name} {tuple(round(v, 3) for v in x)} vs truth {tuple(round(v, 3) for v in y)}"
    return None


def truth_score(truth: dict) -> int:
    side = truth.get("affected_side")
    return int(truth["aspects"][side]) if side else int(min(truth["aspects"].values()))


def pred_involved(result: dict) -> Dict[str, List[str]]:
    regions = result.get("regions") or {}
    return {s: [c for c in REGION_CODES if (regions.get(s) or {}).get(c, {}).get("involved")] for s in SIDES}


def evaluate_case(case: Path, run: Path, empty_ml: float = 0.0) -> dict:
    """One case's record: truth facts, and the metrics when the app's outputs are complete."""
    truth = json.loads((case / "truth.json").read_text())
    rec: dict = {
        "case_id": case.name, "kind": truth.get("kind"), "hu_drop": truth.get("hu_drop"),
        "slice_thickness_mm": truth.get("slice_thickness_mm"), "truth_score": truth_score(truth),
        "truth_aspects": truth.get("aspects"), "truth_side": truth.get("affected_side"),
        "truth_involved": truth.get("involved") or {}, "truth_volume_ml_json": truth.get("infarct_volume_ml"),
        "truth_outside_mca_ml": truth.get("infarct_outside_mca_ml") or 0.0,
        "anatomy": truth.get("anatomy", "template"), "generator": truth.get("generator", "v1"),
        "lesion_id": truth.get("lesion_id"),
        "status": "ok", "error": None,
    }
    missing = [rel for rel in APP_OUTPUTS if not (run / rel).is_file()]
    if missing:
        rec.update(status="failed", error="missing " + ", ".join(missing))
        return rec
    result = json.loads((run / "aspects.json").read_text())
    if result.get("score") is None:
        rec.update(status="failed", error="no score: regions not assessable " + ", ".join(
            (result.get("flag_details") or {}).get("incomplete_coverage", {}).get("regions", [])))
        return rec
    rec.update(pred_score=int(result["score"]), pred_aspects=result.get("aspects"), pred_side=result.get("affected_side"),
               pred_range=result.get("aspects_range"),
               pred_involved=pred_involved(result), flags=list(result.get("flags") or []),
               evidence_called=sorted(f"{s} {c}" for s in SIDES for c, r in ((result.get("regions") or {}).get(s) or {}).items()
                                      if "evidence" in (r.get("involved_by") or [])),
               qc_ncc=(result.get("qc") or {}).get("ncc"),
               pred_volume_ml_json=result.get("infarct_volume_ml"), methods=result.get("methods"),
               timings_s=result.get("timings_s") or {})
    t_inf, spacing, t_grid = read_mask(case / "truth" / "infarct.nii.gz")
    p_inf, _, p_grid = read_mask(run / "nifti" / "infarct.nii.gz")
    t_reg, _, r_grid = read_mask(case / "truth" / "regions.nii.gz")
    p_reg, _, q_grid = read_mask(run / "nifti" / "regions.nii.gz")
    diff = grid_difference(p_grid, t_grid) or grid_difference(q_grid, r_grid)
    if diff:
        rec.update(status="failed", error=f"output grid differs from the truth grid: {diff}")
        return rec
    seg = mt.segmentation_metrics(p_inf, t_inf, spacing, empty_ml=empty_ml)
    rec["infarct"] = seg.as_dict()
    rec["detection"] = mt.detection_outcome(seg.truth_ml, seg.pred_ml, empty_ml)
    rd = mt.label_dice(p_reg, t_reg, [r.value for r in all_regions()])
    rec["region_dice"] = {str(v): d for v, d in rd.items()}
    rec["region_dice_mean"] = float(np.mean(mt.defined(rd.values()))) if mt.defined(rd.values()) else None
    rec["located"] = located_against_truth(case, run, result)
    return rec


# The located findings' label values in nifti/findings.nii.gz (aspects.assess.ScoredStudy.findings_labels:
# i + 1 for FINDINGS[i]) and the phantom's truth mask of each (truth/<name>.nii.gz, where the generator made one).
TRUTH_OF = {FLAG_HAEMORRHAGE: "haemorrhage", FLAG_OLD_INFARCT: "old_infarct"}
LOCATED = tuple((name, value, TRUTH_OF[name]) for value, name in enumerate(FINDINGS, start=1))


def located_against_truth(case: Path, run: Path, result: dict) -> Dict[str, dict]:
    """Where each flagged haemorrhage / old infarct the app located lies against the truth:
    ``located_ml``, ``inside_truth`` (share of the located mask inside the truth's mask of that
    finding, 0 where the study has none) and ``truth_covered``; {} for runs without
    nifti/findings.nii.gz (apps before 0.4.0)."""
    path = run / "nifti" / "findings.nii.gz"
    if not path.is_file():
        return {}
    labels, spacing, grid = read_mask(path)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = {}
    for flag, value, truth_name in LOCATED:
        if flag not in (result.get("flags") or []):
            continue
        mask = labels == value
        truth_path = case / "truth" / f"{truth_name}.nii.gz"
        truth = read_mask(truth_path)[0] > 0 if truth_path.is_file() else np.zeros_like(mask)
        hit = int((mask & truth).sum())
        out[flag] = {"located_ml": round(float(mask.sum()) * voxel_ml, 3),
                     "inside_truth": round(hit / mask.sum(), 3) if mask.any() else None,
                     "truth_covered": round(hit / truth.sum(), 3) if truth.any() else None}
    return out


# ----------------------------------------------------------------------------- aggregation
def hu_bin(hu: Optional[float]) -> Optional[str]:
    if hu is None:
        return None
    return next(name for name, lo, hi in HU_BINS if lo <= float(hu) < hi)


def summarise_infarct(recs: Sequence[dict], seed: int) -> dict:
    return {k: mt.bootstrap_median([r["infarct"][k] for r in recs], seed=seed).as_dict() for k in mt.SEGMENTATION_METRICS}


def volume_agreement(truth_ml: Sequence[float], pred_ml: Sequence[float]) -> dict:
    """Bland-Altman bias and 95 % limits of agreement (prediction - truth, ml)."""
    d = np.asarray(pred_ml, float) - np.asarray(truth_ml, float)
    if d.size == 0:
        return {"n": 0, "bias_ml": None, "sd_ml": None, "loa_low_ml": None, "loa_high_ml": None}
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    bias = float(d.mean())
    return {"n": int(d.size), "bias_ml": bias, "sd_ml": sd, "loa_low_ml": bias - 1.96 * sd, "loa_high_ml": bias + 1.96 * sd}


def outside_mca_control(rec: dict) -> bool:
    """An acute case whose infarct lies outside the MCA territory (--pattern aca / pca / thalamus /
    cerebellum): a negative control for ASPECTS."""
    vol = rec.get("truth_volume_ml_json") or 0.0
    return rec["kind"] == "acute" and vol > 0 and rec.get("truth_outside_mca_ml", 0.0) >= 0.9 * vol


def points_lost(rec: dict) -> Optional[int]:
    """ASPECTS points below 10 + 10 the app reported (None when a side had no score)."""
    asp = rec.get("pred_aspects") or {}
    if any(asp.get(s) is None for s in SIDES):
        return None
    return 20 - int(asp["left"]) - int(asp["right"])


def control_check(rec: dict) -> Tuple[str, bool]:
    """What a control must show, and whether it did: no ASPECTS point lost on either side, and
    the haemorrhage flag exactly on the haemorrhage studies."""
    flags = rec.get("flags", [])
    lost = points_lost(rec)
    if outside_mca_control(rec):
        return (f"ASPECTS 10 both sides, flag {FLAG_OUTSIDE_MCA}", lost == 0 and FLAG_OUTSIDE_MCA in flags)
    if rec["kind"] == "haemorrhage":
        return f"ASPECTS 10 both sides, flag {FLAG_HAEMORRHAGE}", lost == 0 and FLAG_HAEMORRHAGE in flags
    what = {"normal": "ASPECTS 10 both sides", "old_infarct": "ASPECTS 10 both sides (old infarct not counted)",
            "leukoaraiosis": "ASPECTS 10 both sides (leukoaraiosis not counted)"}[rec["kind"]]
    return f"{what}, no haemorrhage flag", lost == 0 and FLAG_HAEMORRHAGE not in flags


# A control without an acute infarct that reports one of at least this (the outside-MCA flag's own
# floor, aspects.flags.MIN_OUTSIDE_MCA_ML): the reader is told of an infarct the study does not
# have, whether or not it costs a point, so the report counts it apart from the points.
FALSE_ACUTE_MIN_ML = 1.0


def false_acute_on_controls(controls: Sequence[dict], min_ml: float = FALSE_ACUTE_MIN_ML) -> dict:
    """Of the controls without an acute infarct (normal, old infarct, haemorrhage, leukoaraiosis;
    rows of the report's ``controls``), those reporting >= ``min_ml`` of acute infarct, the largest
    such volume and how many are flagged ``infarct_outside_mca``."""
    rs = [c for c in controls if c["kind"] in CONTROL_KINDS]
    ml = [float(c["infarct_ml"]) for c in rs if c["infarct_ml"] is not None and c["infarct_ml"] >= min_ml]
    return {"reporting": proportion(len(ml), len(rs)), "min_ml": min_ml, "max_ml": max(ml) if ml else None,
            "outside_mca_flags": sum(FLAG_OUTSIDE_MCA in c["flags"] for c in rs)}


def _false_acute_lines(fa: dict) -> List[str]:
    """The Controls section's line on acute infarct reported where there is none (nothing for a
    set without such controls)."""
    if not fa["reporting"]["n"]:
        return []
    k, n = fa["reporting"]["k"], fa["reporting"]["n"]
    most = f" (up to {_f(fa['max_ml'], 1)} ml)" if k else ""
    return [f"Acute infarct reported on controls without one (normal, old infarct, haemorrhage, leukoaraiosis): "
            f"{k} of {n} report >= {_f(fa['min_ml'], 1)} ml{most}; `{FLAG_OUTSIDE_MCA}` on {fa['outside_mca_flags']}.", ""]


def wilson_interval(k: int, n: int, level: float = 0.90) -> Tuple[Optional[float], Optional[float]]:
    """Wilson score interval of a proportion k / n (Wilson 1927); (None, None) when n = 0."""
    if n == 0:
        return None, None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def proportion(k: int, n: int, level: float = 0.90) -> dict:
    lo, hi = wilson_interval(k, n, level)
    return {"k": int(k), "n": int(n), "value": (k / n) if n else None, "ci_low": lo, "ci_high": hi}


def hemisphere_errors(recs: Sequence[dict]) -> np.ndarray:
    """|reported - true| ASPECTS per hemisphere (both sides of every study with two scores)."""
    pairs = [(int(r["truth_aspects"][s]), int(r["pred_aspects"][s])) for r in recs for s in SIDES
             if (r.get("pred_aspects") or {}).get(s) is not None and (r.get("truth_aspects") or {}).get(s) is not None]
    return np.array([abs(a - b) for a, b in pairs], int)


def hemisphere_agreement(recs: Sequence[dict]) -> dict:
    """Per hemisphere (both sides of every study with two scores): exact and within-1 agreement
    of the reported ASPECTS with the truth, with Wilson intervals."""
    d = hemisphere_errors(recs)
    return {"n": int(d.size), "exact": proportion(int(np.sum(d == 0)), int(d.size)),
            "within_1": proportion(int(np.sum(d <= 1)), int(d.size))}


def range_coverage(recs: Sequence[dict]) -> dict:
    """Per hemisphere whose aspects.json reports ``aspects_range`` (session 17): the share whose
    true ASPECTS lies in the range (with a Wilson interval) and the range's mean width."""
    spans = [(int(r["truth_aspects"][s]), r["pred_range"][s]) for r in recs for s in SIDES
             if (r.get("pred_range") or {}).get(s) is not None and (r.get("truth_aspects") or {}).get(s) is not None]
    inside = sum(lo <= t <= hi for t, (lo, hi) in spans)
    return {"covered": proportion(inside, len(spans)),
            "mean_width": float(np.mean([hi - lo for _, (lo, hi) in spans])) if spans else None}


def region_bin(hu: Optional[float]) -> Optional[str]:
    if hu is None:
        return None
    return next(name for name, lo, hi in REGION_HU_BINS if lo <= float(hu) < hi)


def volume_bin(ml: float) -> str:
    return next(name for name, lo, hi in VOLUME_BINS_ML if lo <= float(ml) < hi)


def region_calls(recs: Sequence[dict]) -> List[Tuple[dict, str, str, bool, bool]]:
    """(record, side, code, truly involved, reported involved) for every region of every study."""
    out = []
    for r in recs:
        for s in SIDES:
            t, p = set(r["truth_involved"].get(s) or ()), set(r["pred_involved"].get(s) or ())
            out.extend((r, s, c, c in t, c in p) for c in REGION_CODES)
    return out


def region_detection(recs: Sequence[dict]) -> dict:
    """Region sensitivity per HU-drop bin (and per bin x lesion-volume class), region specificity
    over every study, all with Wilson intervals."""
    calls = region_calls(recs)
    pos = [(r, p) for r, _, _, t, p in calls if t]
    neg = [p for _, _, _, t, p in calls if not t]
    out: dict = {"specificity": proportion(sum(not p for p in neg), len(neg)), "sensitivity": {},
                 "sensitivity_by_volume": {}}
    out["sensitivity"]["all"] = proportion(sum(p for _, p in pos), len(pos))
    for name, _, _ in REGION_HU_BINS:
        sel = [p for r, p in pos if region_bin(r["hu_drop"]) == name]
        out["sensitivity"][name] = proportion(sum(sel), len(sel))
        for vname, _, _ in VOLUME_BINS_ML:
            sv = [p for r, p in pos if region_bin(r["hu_drop"]) == name and volume_bin(r["infarct"]["truth_ml"]) == vname]
            out["sensitivity_by_volume"][f"{name} | {vname}"] = proportion(sum(sv), len(sv))
    return out


def aggregate(records: Sequence[dict], empty_ml: float = 0.0, seed: int = 0) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    acute = [r for r in ok if r["kind"] == "acute"]
    lesion = [r for r in acute if r["infarct"]["truth_ml"] > empty_ml]
    rep: dict = {
        "n_cases": len(records), "n_ok": len(ok),
        "failed": [{"case_id": r["case_id"], "error": r["error"], "exit_code": r.get("exit_code")} for r in records if r["status"] != "ok"],
        "empty_ml": empty_ml, "bootstrap": {"resamples": 2000, "level": 0.90, "seed": seed},
    }
    groups = {"all cases": ok, "acute": acute,
              f"acute, <= {LARGE_CORE_ML:g} ml": [r for r in lesion if r["infarct"]["truth_ml"] <= LARGE_CORE_ML],
              f"acute, > {LARGE_CORE_ML:g} ml": [r for r in lesion if r["infarct"]["truth_ml"] > LARGE_CORE_ML]}
    for name, _, _ in HU_BINS:
        groups[f"hu_drop {name}"] = [r for r in acute if hu_bin(r["hu_drop"]) == name]
    rep["infarct"] = {g: {"n": len(rs), **summarise_infarct(rs, seed)} for g, rs in groups.items() if rs}
    det = {k: sum(r["detection"] == k for r in ok) for k in ("tp", "tn", "fp", "fn")}
    det["lesion_detection_rate"] = det["tp"] / (det["tp"] + det["fn"]) if det["tp"] + det["fn"] else None
    det["correct_classification_rate"] = (det["tp"] + det["tn"]) / len(ok) if ok else None
    rep["detection"] = det
    rep["volume"] = volume_agreement([r["infarct"]["truth_ml"] for r in ok], [r["infarct"]["pred_ml"] for r in ok])
    rep["regions"] = {
        "mean_dice_per_case": mt.bootstrap_median([r["region_dice_mean"] for r in ok], seed=seed).as_dict(),
        "per_region": {
            f"{reg.side} {reg.code}": mt.bootstrap_median([r["region_dice"][str(reg.value)] for r in ok], seed=seed).as_dict()
            for reg in all_regions()
        },
    }
    scored = [r for r in ok if r["kind"] != "haemorrhage"]
    rep["aspects"] = {
        "acute": ag.score_agreement([r["truth_score"] for r in acute], [r["pred_score"] for r in acute]).as_dict(),
        "acute + normal + old infarct": ag.score_agreement([r["truth_score"] for r in scored], [r["pred_score"] for r in scored]).as_dict(),
        "confusion_matrix": ag.confusion_matrix([r["truth_score"] for r in scored], [r["pred_score"] for r in scored]).tolist(),
        "region_involvement": {k: v.as_dict() for k, v in ag.region_involvement(
            [r["truth_involved"] for r in scored], [r["pred_involved"] for r in scored]).items()},
    }
    n_side, acc = ag.side_accuracy([r["truth_side"] for r in acute], [r["pred_side"] for r in acute])
    rep["aspects"]["side_accuracy"] = {"n": n_side, "accuracy": acc}
    rep["hemisphere_aspects"] = {"all studies": hemisphere_agreement(ok), "acute": hemisphere_agreement(acute)}
    rep["aspects_range"] = range_coverage(ok)
    rep["region_detection"] = region_detection(ok)
    strong = [r for r in acute if (r["hu_drop"] or 0) >= 4.0 and r["infarct"]["truth_ml"] > empty_ml]
    rep["dice_hu_ge_4"] = {"n": len(strong), **mt.bootstrap_median([r["infarct"]["dice"] for r in strong], seed=seed).as_dict()}
    no_blood = [r for r in ok if r["kind"] != "haemorrhage"]
    rep["false_haemorrhage_flags"] = proportion(sum(FLAG_HAEMORRHAGE in r["flags"] for r in no_blood), len(no_blood))
    rep["low_confidence"] = proportion(sum(FLAG_LOW_CONFIDENCE in r["flags"] for r in ok), len(ok))
    rep["located_findings"] = located_summary(ok)
    rep["controls"] = []
    for r in ok:
        if r["kind"] in CONTROL_KINDS or outside_mca_control(r):
            expect, passed = control_check(r)
            kind = "acute outside MCA" if outside_mca_control(r) else r["kind"]
            rep["controls"].append({"case_id": r["case_id"], "kind": kind, "expected": expect, "passed": passed,
                                    "score": r["pred_score"], "points_lost": points_lost(r), "anatomy": r.get("anatomy"),
                                    "infarct_ml": r["infarct"]["pred_ml"], "flags": r["flags"]})
    rep["controls_points_lost"] = sum(c["points_lost"] or 0 for c in rep["controls"])
    rep["false_acute_on_controls"] = false_acute_on_controls(rep["controls"])
    rep["by_anatomy"] = {}
    for anat in sorted({r.get("anatomy") or "template" for r in ok}):
        rs = [r for r in ok if (r.get("anatomy") or "template") == anat]
        cs = [c for c in rep["controls"] if (c["anatomy"] or "template") == anat]
        rep["by_anatomy"][anat] = {"n": len(rs), "hemisphere": hemisphere_agreement(rs),
                                   "region_specificity": region_detection(rs)["specificity"],
                                   "controls_points_lost": sum(c["points_lost"] or 0 for c in cs),
                                   "false_acute_on_controls": false_acute_on_controls(cs)["reporting"]}
    rep["targets"] = targets(rep)
    stages = sorted({s for r in ok for s in r["timings_s"]})
    rep["timings_s"] = {s: mt.bootstrap_median([r["timings_s"].get(s) for r in ok], seed=seed).as_dict() for s in stages}
    rep["methods"] = sorted({json.dumps(r.get("methods"), sort_keys=True) for r in ok})
    return rep


def located_summary(ok: Sequence[dict]) -> Dict[str, dict]:
    """Per flag: the studies flagged, those whose finding the app located on the slices, and the
    located mask's share inside the truth (min / median / max) on the studies that have the finding
    (kind haemorrhage / old_infarct) and on the others (false flags)."""
    out = {}
    for flag, _, kind in LOCATED:
        flagged = [r for r in ok if flag in r["flags"]]
        located = [r for r in flagged if (r.get("located") or {}).get(flag, {}).get("inside_truth") is not None]
        inside = [r["located"][flag]["inside_truth"] for r in located if r["kind"] == kind]
        out[flag] = {"flagged": len(flagged), "located": len(located), "on_the_finding": len(inside),
                     "inside_truth": None if not inside else
                     {"min": min(inside), "median": float(np.median(inside)), "max": max(inside)},
                     "elsewhere": [r["case_id"] for r in located if r["kind"] != kind]}
    return out


def targets(rep: dict) -> List[dict]:
    """Issue 13's targets: measured value (with its 90 % interval) against each threshold."""
    hem, det = rep["hemisphere_aspects"]["all studies"], rep["region_detection"]
    rows = [("hemisphere ASPECTS exact (all studies)", 0.80, hem["exact"]),
            ("hemisphere ASPECTS within 1 (all studies)", 0.97, hem["within_1"]),
            ("region sensitivity, HU drop 3-4", 0.80, det["sensitivity"]["3-4"]),
            ("region sensitivity, HU drop >= 5", 0.95, det["sensitivity"][">=5"]),
            ("region specificity (all studies)", 0.97, det["specificity"])]
    out = []
    for name, thr, p in rows:
        out.append({"target": name, "threshold": f">= {thr:.2f}", "value": p["value"], "ci_low": p["ci_low"],
                    "ci_high": p["ci_high"], "n": p["n"], "met": p["value"] is not None and p["value"] >= thr})
    d = rep["dice_hu_ge_4"]
    out.append({"target": "acute infarct Dice, HU drop >= 4 (median)", "threshold": ">= 0.75", "value": d["median"],
                "ci_low": d["ci_low"], "ci_high": d["ci_high"], "n": d["n"], "met": d["median"] is not None and d["median"] >= 0.75})
    n_ctrl = len(rep["controls"])
    out.append({"target": "ASPECTS points lost on controls", "threshold": "0", "value": rep["controls_points_lost"],
                "ci_low": None, "ci_high": None, "n": n_ctrl, "met": n_ctrl > 0 and rep["controls_points_lost"] == 0})
    return out


# ----------------------------------------------------------------------------- figures
def write_figures(records: Sequence[dict], report: dict, img_dir: Path) -> Dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r["status"] == "ok"]
    files: Dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(img_dir / name, dpi=110)
        plt.close(fig)
        files[name] = str(img_dir / name)

    colours = {"acute": "tab:red", "normal": "tab:green", "old_infarct": "tab:blue", "haemorrhage": "tab:purple"}
    # Bland-Altman of infarct volume
    fig, ax = plt.subplots(figsize=(6, 4.2))
    t = np.array([r["infarct"]["truth_ml"] for r in ok])
    p = np.array([r["infarct"]["pred_ml"] for r in ok])
    for kind, col in colours.items():
        sel = np.array([r["kind"] == kind for r in ok], bool)
        if sel.any():
            ax.scatter(((t + p) / 2)[sel], (p - t)[sel], c=col, label=kind, s=25)
    va = report["volume"]
    if va["n"]:
        ax.axhline(va["bias_ml"], color="k", lw=1, label=f"bias {va['bias_ml']:.1f} ml")
        for k in ("loa_low_ml", "loa_high_ml"):
            ax.axhline(va[k], color="k", lw=1, ls="--")
    ax.set_xlabel("mean of truth and prediction (ml)")
    ax.set_ylabel("prediction - truth (ml)")
    ax.set_title("Infarct volume: Bland-Altman (dashed: 95 % limits)")
    ax.legend(fontsize=8)
    save(fig, "eval_bland_altman.png")

    # ASPECTS confusion matrix
    cm = np.asarray(report["aspects"]["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(cm, cmap="Blues", origin="lower")
    for i, j in zip(*np.nonzero(cm)):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="k" if cm[i, j] < cm.max() / 2 else "w", fontsize=9)
    ax.set_xticks(range(11))
    ax.set_yticks(range(11))
    ax.set_xlabel("reported ASPECTS")
    ax.set_ylabel("true ASPECTS")
    ax.set_title("ASPECTS confusion (haemorrhage excluded)")
    save(fig, "eval_confusion.png")

    # per-region Dice bars (median with 90 % CI)
    per = report["regions"]["per_region"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(REGION_CODES))
    for k, (side, col) in enumerate(zip(SIDES, ("tab:orange", "tab:blue"))):
        s = [per[f"{side} {c}"] for c in REGION_CODES]
        med = np.array([v["median"] if v["median"] is not None else np.nan for v in s])
        lo = np.array([v["ci_low"] if v["ci_low"] is not None else np.nan for v in s])
        hi = np.array([v["ci_high"] if v["ci_high"] is not None else np.nan for v in s])
        ax.bar(x + (k - 0.5) * 0.4, med, 0.4, color=col, label=side, yerr=[med - lo, hi - med], capsize=2)
    ax.set_xticks(x, REGION_CODES)
    ax.set_xlim(-0.6, len(REGION_CODES) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Dice (median, 90 % CI)")
    ax.set_title("ASPECTS region Dice against the truth region map")
    ax.legend(fontsize=8)
    save(fig, "eval_region_dice.png")

    # Dice vs hu_drop (acute)
    acute = [r for r in ok if r["kind"] == "acute" and r["hu_drop"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    hu = [r["hu_drop"] for r in acute]
    di = [r["infarct"]["dice"] if r["infarct"]["dice"] is not None else np.nan for r in acute]
    vol = np.array([r["infarct"]["truth_ml"] for r in acute])
    sc = ax.scatter(hu, di, c=vol, cmap="viridis", s=30)
    if acute:
        fig.colorbar(sc, ax=ax, label="true infarct volume (ml)")
    ax.set_xlabel("hypoattenuation of the infarct (HU below normal)")
    ax.set_ylabel("infarct Dice")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Infarct Dice vs HU drop (detection limit)")
    save(fig, "eval_dice_vs_hu.png")
    detection_limit_figure(ok, report, save)
    return files


def detection_limit_figure(ok: Sequence[dict], report: dict, save) -> None:
    """Region sensitivity against HU drop (all, and per lesion-volume class; Wilson 90 % intervals)
    and each acute lesion's HU drop and volume, marked by whether the app found it."""
    import matplotlib.pyplot as plt

    det = report["region_detection"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [n for n, _, _ in REGION_HU_BINS]
    x = np.arange(len(names))
    for k, (label, key, col) in enumerate([("all lesions", None, "k")] + [(v, v, c) for (v, _, _), c in
                                                                       zip(VOLUME_BINS_ML, ("tab:orange", "tab:blue", "tab:green"))]):
        vals = [det["sensitivity"][n] if key is None else det["sensitivity_by_volume"][f"{n} | {key}"] for n in names]
        y = np.array([v["value"] if v["value"] is not None else np.nan for v in vals])
        lo = np.array([v["ci_low"] if v["ci_low"] is not None else np.nan for v in vals])
        hi = np.array([v["ci_high"] if v["ci_high"] is not None else np.nan for v in vals])
        off = (k - 1.5) * 0.08
        # a rounded interval bound can sit a hair inside its value (1.0 against 0.99999)
        ax[0].errorbar(x + off, y, yerr=np.clip([y - lo, hi - y], 0.0, None), fmt="o-" if key is None else "s--", color=col, capsize=3,
                       lw=2 if key is None else 1, label=f"{label} (n regions: {sum(v['n'] for v in vals)})")
    ax[0].axhline(0.8, color="grey", lw=0.8, ls=":")
    ax[0].axhline(0.95, color="grey", lw=0.8, ls=":")
    ax[0].set_xticks(x, [f"{n} HU" for n in names])
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].set_xlabel("hypoattenuation of the infarct (HU below normal)")
    ax[0].set_ylabel("region sensitivity (90 % Wilson CI)")
    ax[0].set_title("ASPECTS regions found, by HU drop and lesion volume")
    ax[0].legend(fontsize=7, loc="lower right")
    acute = [r for r in ok if r["kind"] == "acute" and r["infarct"]["truth_ml"] > 0]
    for found, mk, col, label in ((True, "o", "tab:green", "found"), (False, "x", "tab:red", "missed")):
        sel = [r for r in acute if (r["infarct"]["pred_ml"] > 0 and (r["infarct"]["dice"] or 0) > 0) == found]
        ax[1].scatter([r["hu_drop"] for r in sel], [r["infarct"]["truth_ml"] for r in sel], marker=mk, c=col, label=label, s=30)
    if acute:
        ax[1].set_yscale("log")
        ax[1].legend(fontsize=8)
    else:  # a set of controls only (e.g. make_v2_data.sh old_patterns): no volume to place
        ax[1].text(0.5, 0.5, "no acute lesion in this set", ha="center", va="center", transform=ax[1].transAxes)
    ax[1].set_xlabel("hypoattenuation of the infarct (HU below normal)")
    ax[1].set_ylabel("true infarct volume (ml)")
    ax[1].set_title("Acute lesions: found (infarct mask overlaps the truth) or missed")
    save(fig, "eval_detection_limit.png")


# ----------------------------------------------------------------------------- markdown
def _f(v: Optional[float], digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(s: dict, digits: int = 2) -> str:
    if not s["n"]:
        return "n/a"
    return f"{_f(s['median'], digits)} ({_f(s['ci_low'], digits)}-{_f(s['ci_high'], digits)})"


def to_markdown(report: dict, records: Sequence[dict], img_rel: str) -> str:
    meta = report["meta"]
    L = [
        "# Evaluation on synthetic studies",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} (git {meta['git']}).",
        f"Machine: {machine_line(meta['machine'])}.",
    ]
    if meta.get("note"):
        L.append(f"Note: {meta['note']}")
    L += ["", "The studies are synthetic phantoms with known truth (aspects-make-phantoms, docs/data.md): these "
          "figures measure the pipeline against that truth, not clinical accuracy on patients' scans.",
          "", f"Cases: {report['n_cases']}, evaluated: {report['n_ok']}, failed: {len(report['failed'])}. "
          f"Methods used by the app: {', '.join(report['methods']) or 'n/a'}.", ""]
    if report["failed"]:
        L += ["| failed case | exit code | reason |", "| --- | --- | --- |"]
        L += [f"| {f['case_id']} | {f['exit_code']} | {f['error']} |" for f in report["failed"]]
        L.append("")
    L += ["## Targets (issue 13)", "",
          "| target | threshold | measured (90 % CI) | n | met |", "| --- | --- | --- | --- | --- |"]
    for t in report["targets"]:
        ci = "" if t["ci_low"] is None else f" ({_f(t['ci_low'])}-{_f(t['ci_high'])})"
        val = t["value"] if isinstance(t["value"], int) else _f(t["value"])
        L.append(f"| {t['target']} | {t['threshold']} | {val}{ci} | {t['n']} | {'yes' if t['met'] else 'NO'} |")
    det = report["region_detection"]
    L += ["", "Proportions carry Wilson 90 % intervals (Wilson 1927); medians a bootstrap 90 % interval.", "",
          "Region sensitivity by HU drop of the acute infarct (regions truly involved; both sides of every study), "
          "and by lesion volume:", "",
          "| HU drop | all lesions | " + " | ".join(v for v, _, _ in VOLUME_BINS_ML) + " |",
          "| --- | --- | " + " | ".join("---" for _ in VOLUME_BINS_ML) + " |"]

    def _p(x: dict) -> str:
        return "n/a" if not x["n"] else f"{_f(x['value'])} ({x['k']}/{x['n']}; {_f(x['ci_low'])}-{_f(x['ci_high'])})"

    for name, _, _ in REGION_HU_BINS:
        L.append(f"| {name} | {_p(det['sensitivity'][name])} | "
                 + " | ".join(_p(det["sensitivity_by_volume"][f"{name} | {v}"]) for v, _, _ in VOLUME_BINS_ML) + " |")
    L.append(f"| all | {_p(det['sensitivity']['all'])} | " + " | ".join("" for _ in VOLUME_BINS_ML) + " |")
    hem = report["hemisphere_aspects"]
    L += ["", f"Region specificity: {_p(det['specificity'])}. Hemisphere ASPECTS (both sides of each study): all studies "
          f"exact {_p(hem['all studies']['exact'])}, within 1 {_p(hem['all studies']['within_1'])}; acute studies exact "
          f"{_p(hem['acute']['exact'])}, within 1 {_p(hem['acute']['within_1'])}."
          + ("" if not (report.get("aspects_range") or {}).get("covered", {}).get("n") else
             f" True ASPECTS inside the reported range (marginal calls flipped): {_p(report['aspects_range']['covered'])}, "
             f"mean width {_f(report['aspects_range']['mean_width'])} points."),
          f"Haemorrhage flag on studies without blood: {_p(report['false_haemorrhage_flags'])}; "
          f"`low_confidence`: {_p(report['low_confidence'])}.", "",
          *located_lines(report.get("located_findings") or {}),
          f"![detection limit]({img_rel}/eval_detection_limit.png)", "",
          "By anatomy source:", "", "| anatomy | studies | hemisphere exact | within 1 | region specificity | points lost on controls "
          f"| controls reporting >= {_f(FALSE_ACUTE_MIN_ML, 1)} ml acute |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for anat, a in report["by_anatomy"].items():
        fa = a["false_acute_on_controls"]
        reporting = f"{fa['k']} of {fa['n']}" if fa["n"] else "-"
        L.append(f"| {anat} | {a['n']} | {_p(a['hemisphere']['exact'])} | {_p(a['hemisphere']['within_1'])} | "
                 f"{_p(a['region_specificity'])} | {a['controls_points_lost']} | {reporting} |")
    L += ["", f"Acute infarct Dice at HU drop >= 4: {_ci(report['dice_hu_ge_4'])} (n = {report['dice_hu_ge_4']['n']}).", ""]
    L += [
        "Values are median (bootstrap 90 % CI, 2000 resamples, fixed seed) over cases, as in Ostmeier et al. 2022. "
        f"A mask of <= {report['empty_ml']:g} ml counts as empty; a metric undefined for a case (e.g. distances "
        "when either mask is empty, Dice when both are) is left out of that metric's n, never averaged as NaN.",
        "",
        "## Infarct segmentation",
        "",
        "| cases | n | Dice | IoU | precision | sensitivity | ASSD (mm) | HD95 (mm) | surface Dice 5 mm | AVD (ml) | VS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for g, s in report["infarct"].items():
        L.append(f"| {g} | {s['n']} | " + " | ".join(_ci(s[k], 1 if k in ('assd_mm', 'hd95_mm', 'avd_ml') else 2)
                                                   for k in mt.SEGMENTATION_METRICS) + " |")
    d, v = report["detection"], report["volume"]
    L += ["", f"Detection (lesion present = volume > {report['empty_ml']:g} ml): TP {d['tp']}, TN {d['tn']}, FP {d['fp']}, "
          f"FN {d['fn']}; lesion detection rate {_f(d['lesion_detection_rate'])}, correct classification rate "
          f"{_f(d['correct_classification_rate'])}.",
          f"Infarct volume, prediction - truth (Bland-Altman, n = {v['n']}): bias {_f(v['bias_ml'], 1)} ml, "
          f"95 % limits {_f(v['loa_low_ml'], 1)} to {_f(v['loa_high_ml'], 1)} ml.", "",
          f"![Bland-Altman]({img_rel}/eval_bland_altman.png) ![Dice vs HU drop]({img_rel}/eval_dice_vs_hu.png)", ""]
    a = report["aspects"]
    L += ["## ASPECTS", "",
          "| cases | n | exact | within 1 | within 2 | MAE | bias | quadratic kappa | sens. ASPECTS < 6 | spec. ASPECTS < 6 |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g in ("acute", "acute + normal + old infarct"):
        s = a[g]
        L.append(f"| {g} | {s['n']} | {_f(s['exact'])} | {_f(s['within_1'])} | {_f(s['within_2'])} | {_f(s['mae'])} | "
                 f"{_f(s['mean_difference'])} | {_f(s['kappa_quadratic'])} | {_f(s['dichotomised']['sensitivity'])} | "
                 f"{_f(s['dichotomised']['specificity'])} |")
    sa = a["side_accuracy"]
    L += ["", f"Affected side correct: {_f(sa['accuracy'])} of {sa['n']} acute cases. The dichotomised score counts "
          "ASPECTS < 6 (large core: no thrombectomy by the guidelines' >= 6 rule) as positive.", "",
          "Region involvement (each case: 10 regions x 2 sides, haemorrhage excluded):", "",
          "| region | TP | FP | TN | FN | sensitivity | specificity |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for code, s in a["region_involvement"].items():
        L.append(f"| {code} | {s['tp']} | {s['fp']} | {s['tn']} | {s['fn']} | {_f(s['sensitivity'])} | {_f(s['specificity'])} |")
    L += ["", f"![ASPECTS confusion matrix]({img_rel}/eval_confusion.png)", "", "## Controls", "",
          f"ASPECTS points lost on controls: {report['controls_points_lost']} "
          f"({sum(c['passed'] for c in report['controls'])} of {len(report['controls'])} controls pass).", "",
          *_false_acute_lines(report["false_acute_on_controls"]),
          "| case | kind | anatomy | expected | reported score | points lost | infarct (ml) | flags | pass |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in report["controls"]:
        L.append(f"| {c['case_id']} | {c['kind']} | {c.get('anatomy') or '-'} | {c['expected']} | {c['score']} | "
                 f"{c['points_lost']} | {_f(c['infarct_ml'], 1)} | {', '.join(c['flags']) or '-'} | {'yes' if c['passed'] else 'NO'} |")
    rg = report["regions"]
    L += ["", "## ASPECTS regions", "", f"Mean region Dice per case: {_ci(rg['mean_dice_per_case'])}.", "",
          "| region | right | left |", "| --- | --- | --- |"]
    for code in REGION_CODES:
        L.append(f"| {code} | {_ci(rg['per_region'][f'right {code}'])} | {_ci(rg['per_region'][f'left {code}'])} |")
    L += ["", f"![Region Dice]({img_rel}/eval_region_dice.png)", ""]
    if report["timings_s"]:
        L += ["## Per-stage time in these runs (s, median and 90 % CI)", "", "| stage | n | time |", "| --- | --- | --- |"]
        L += [f"| {s} | {v['n']} | {_ci(v, 1)} |" for s, v in report["timings_s"].items()]
        L.append("")
    L += ["## Per case", "", "| case | kind | anatomy | mm | HU drop | truth ml | pred ml | Dice | HD95 | region Dice | ASPECTS truth/reported (range) | side truth/reported | flags |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        if r["status"] != "ok":
            L.append(f"| {r['case_id']} | {r['kind']} | {r.get('anatomy') or '-'} | {r.get('slice_thickness_mm')} | "
                     f"{_f(r['hu_drop'], 1)} | failed: {r['error']} |  |  |  |  |  |  |  |")
            continue
        i = r["infarct"]
        L.append(f"| {r['case_id']} | {r['kind']} | {r.get('anatomy') or '-'} | {r.get('slice_thickness_mm')} | "
                 f"{_f(r['hu_drop'], 1)} | {_f(i['truth_ml'], 1)} | {_f(i['pred_ml'], 1)} | "
                 f"{_f(i['dice'])} | {_f(i['hd95_mm'], 1)} | {_f(r['region_dice_mean'])} | "
                 f"L{r['truth_aspects']['left']} R{r['truth_aspects']['right']} / "
                 f"L{_reported(r, 'left')} R{_reported(r, 'right')} | "
                 f"{r['truth_side'] or '-'}/{r['pred_side'] or '-'} | {', '.join(r['flags']) or '-'} |")
    return "\n".join(L) + "\n"


def located_lines(located: Dict[str, dict]) -> List[str]:
    """The report's lines on where the located findings lie (none for runs without them)."""
    lines = []
    for flag, s in located.items():
        if not s["located"]:
            continue
        share = s["inside_truth"]
        lines.append(f"`{flag}`: {s['flagged']} flagged, {s['located']} located on the slices; on the {s['on_the_finding']} "
                     "studies that have it, the located mask's share inside the truth "
                     + ("-" if share is None else f"{_f(share['median'])} ({_f(share['min'])}-{_f(share['max'])})")
                     + (f"; located on studies without it: {', '.join(s['elsewhere'])}." if s["elsewhere"] else "."))
    return lines + [""] if lines else []


def _reported(rec: dict, side: str) -> str:
    """The reported ASPECTS of a side, with its range where marginal calls widen it ("4 (2-6)")."""
    span = (rec.get("pred_range") or {}).get(side)
    value = str((rec.get("pred_aspects") or {}).get(side))
    return value if not span or span[0] == span[1] else f"{value} ({span[0]}-{span[1]})"


# ----------------------------------------------------------------------------- CLI
def command_line(argv: Sequence[str]) -> str:
    """The arguments as a shell line, the --note text shown as '...' (the report prints it separately)."""
    out, skip = [], False
    for a in argv:
        out.append("'...'" if skip else shlex.quote(a))
        skip = a == "--note"
    return " ".join(out)


def git_describe() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def evaluate(cases: Path, runs: Path, report_path: Path, run: bool = False, models: Path = ROOT / "models",
             empty_ml: float = 0.0, seed: int = 0, timeout_s: float = 900.0, note: str = "",
             command: str = "", runner: Optional[Runner] = None, resume: bool = False) -> dict:
    dirs = case_dirs(cases)
    machine = machine_info()
    run_log: Dict[str, RunResult] = {}
    if run:
        runner = runner or InProcessRunner()
        print(f"running the app on {len(dirs)} cases ({machine_line(machine)})", flush=True)
        for k, case in enumerate(dirs, 1):
            if resume and all((runs / case.name / rel).is_file() for rel in APP_OUTPUTS):
                print(f"[{k}/{len(dirs)}] {case.name}: done in an earlier run (--resume)", flush=True)
                continue
            rr = runner(case / "dicom", runs / case.name, models, runs / "_console" / f"{case.name}.txt", timeout_s)
            run_log[case.name] = rr
            print(f"[{k}/{len(dirs)}] {case.name}: exit {rr.exit_code}, {rr.wall_s:.1f} s, peak RSS "
                  f"{rr.peak_rss_mb:.0f} MB{'' if rr.exit_code == 0 else ' - ' + rr.last_line}", flush=True)
    records = []
    for case in dirs:
        try:
            rec = evaluate_case(case, runs / case.name, empty_ml)
        except (OSError, ValueError, KeyError, RuntimeError) as e:  # one unreadable case must not stop the report
            rec = {"case_id": case.name, "kind": None, "hu_drop": None, "status": "failed", "error": f"{type(e).__name__}: {e}"}
        if case.name in run_log:
            rr = run_log[case.name]
            rec.update(exit_code=rr.exit_code, run_wall_s=rr.wall_s, run_peak_rss_mb=rr.peak_rss_mb)
            if rr.exit_code != 0 and rec["status"] == "ok":
                rec.update(status="failed", error=f"exit {rr.exit_code}: {rr.last_line}")
            elif rr.exit_code != 0:
                rec["error"] = f"exit {rr.exit_code}: {rr.last_line}"
        records.append(rec)
    report = aggregate(records, empty_ml, seed)
    report["meta"] = {"command": command, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                      "git": git_describe(), "machine": machine, "note": note, "cases_dir": str(cases), "runs_dir": str(runs)}
    report["cases"] = records
    report_path.parent.mkdir(parents=True, exist_ok=True)
    img_dir = report_path.parent / "img"
    write_figures(records, report, img_dir)
    report_path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    report_path.with_suffix(".md").write_text(to_markdown(report, records, os.path.relpath(img_dir, report_path.parent)))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="synthetic studies with truth (aspects-make-phantoms)")
    ap.add_argument("--runs", type=Path, required=True, help="OUTROOT: the app's output folder per case")
    ap.add_argument("--report", type=Path, default=None, help="report path without suffix (default OUTROOT/report)")
    ap.add_argument("--run", action="store_true", help="run the app on every case first (in this process)")
    ap.add_argument("--subprocess", action="store_true", help="with --run: python app.py per case (wall time and "
                    "peak memory of each run, process start included)")
    ap.add_argument("--models", type=Path, default=ROOT / "models", help="models folder passed to the app with --run")
    ap.add_argument("--empty-ml", type=float, default=0.0, help="masks at or below this volume count as empty (Ostmeier et al. 2022)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per app run before it is killed")
    ap.add_argument("--note", default="", help="free text for the report header (e.g. how the cases were made)")
    ap.add_argument("--resume", action="store_true", help="with --run: keep the results of cases an earlier run completed")
    args = ap.parse_args(argv)
    report_path = args.report if args.report is not None else args.runs / "report"
    report_path = report_path.with_suffix("") if report_path.suffix in (".md", ".json") else report_path
    command = "aspects-evaluate " + command_line(sys.argv[1:] if argv is None else argv)
    try:
        if not args.run and not args.runs.is_dir():
            raise InputError(EXIT_USAGE, f"--runs {args.runs} is not a folder (add --run to run the app)")
        rep = evaluate(args.cases, args.runs, report_path, args.run, args.models, args.empty_ml, args.seed, args.timeout,
                       args.note, command, runner=run_app if args.subprocess else InProcessRunner(),
                       resume=args.resume)
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return e.code
    inf = rep["infarct"].get("acute", {}).get("dice", {"n": 0})
    asp = rep["aspects"]["acute"]
    print(f"evaluated {rep['n_ok']}/{rep['n_cases']} cases ({len(rep['failed'])} failed); acute infarct Dice {_ci(inf)}; "
          f"ASPECTS within 1: {_f(asp['within_1'])}, kappa {_f(asp['kappa_quadratic'])}")
    print(f"report: {report_path.with_suffix('.md')}, {report_path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
