"""The app's infarct masks against your own: real studies with an infarct mask and no ASPECTS truth.

    python -m aspects.serve -m models -o RUNS STUDY_DIR [STUDY_DIR ...]     # or python app.py per study
    python -m aspects_research.tools.infarct_agreement --runs RUNS --masks MASK_DIR [--json OUT.json]

RUNS/<case>/ holds the app's aspects.json and nifti/infarct.nii.gz; MASK_DIR/<case>.nii.gz (or
.nii) the reference mask of the same study (non-zero = infarct) in the same patient space, on any
grid: it is resampled onto the app's grid by nearest neighbour, which is exact when it is the
series' own voxel grid in any axis order (as dcm2niix writes it). One line per case, then the
median Dice, HD95 and volume difference of the cases with a reference lesion (bootstrap 90 %
intervals), lesion detection counts (a mask above ``--empty-ml`` ml is a lesion, Ostmeier et al.
2022) and the Bland-Altman agreement of the volumes. The app's NIfTI takes the first slice's
origin and the median step for a gantry-tilted or unevenly spaced series (README, Outputs):
compare such studies on the SEG instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from aspects.errors import EXIT_USAGE, InputError
from aspects_research import metrics as mt
from aspects_research.tools import one_line_errors
from aspects_research.tools.evaluate import volume_agreement
from aspects_research.tools.make_datalist import lesion_outside, nifti_files, write_json

APP_MASK = Path("nifti") / "infarct.nii.gz"


def reference_on_app_grid(reference, app):
    """The reference mask (non-zero = infarct) as uint8 on the app's mask grid, nearest neighbour
    in patient space (0 where the reference does not reach)."""
    import SimpleITK as sitk

    binary = sitk.Cast(reference != 0, sitk.sitkUInt8)
    return sitk.Resample(binary, app, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def case_agreement(run: Path, mask: Path, empty_ml: float = 0.0) -> dict:
    """One study's record: the segmentation metrics of the app's mask against the reference, the
    detection outcome and the ASPECTS the app reported."""
    import SimpleITK as sitk

    app = sitk.ReadImage(str(run / APP_MASK))
    reference = sitk.ReadImage(str(mask))
    problem = lesion_outside(app, reference)
    if problem:  # resampled, it would read as a study without lesion
        raise InputError(EXIT_USAGE, f"{mask.name} does not fit the app's result of {run.name}: {problem}")
    ref = reference_on_app_grid(reference, app)
    spacing = tuple(app.GetSpacing()[::-1])  # (z, y, x), the arrays' order
    seg = mt.segmentation_metrics(sitk.GetArrayFromImage(app), sitk.GetArrayFromImage(ref), spacing, empty_ml=empty_ml)
    result = json.loads((run / "aspects.json").read_text())
    return {"case": run.name, **seg.as_dict(), "detection": mt.detection_outcome(seg.truth_ml, seg.pred_ml, empty_ml),
            "aspects": result.get("aspects"), "flags": list(result.get("flags") or [])}


def agreement(runs: Path, masks: Path, empty_ml: float = 0.0) -> dict:
    """Every case with a reference mask: its record, or why it has none (no complete app run, or
    a mask whose lesion lies outside the app's grid: another study's or another space's)."""
    for folder, what in ((runs, "--runs"), (masks, "--masks")):
        if not folder.is_dir():
            raise InputError(EXIT_USAGE, f"{what} {folder} is not a folder")
    refs = nifti_files(masks)
    if not refs:
        raise InputError(EXIT_USAGE, f"no reference masks (.nii / .nii.gz) in {masks}")
    cases: List[dict] = []
    missing: Dict[str, str] = {}
    for name, mask in sorted(refs.items()):
        run = runs / name
        if not (run / APP_MASK).is_file() or not (run / "aspects.json").is_file():
            missing[name] = f"no app result in {run} (aspects.json and {APP_MASK})"
            continue
        try:
            cases.append(case_agreement(run, mask, empty_ml))
        except InputError as exc:
            missing[name] = exc.one_line()
    return {"cases": cases, "missing": missing, "summary": summarise(cases, empty_ml)}


def summarise(cases: Sequence[dict], empty_ml: float = 0.0) -> dict:
    lesion = [c for c in cases if c["truth_ml"] > empty_ml]
    outcomes = [c["detection"] for c in cases]
    return {
        "n": len(cases), "n_lesion": len(lesion), "empty_ml": empty_ml,
        **{k: mt.bootstrap_median([c[k] for c in lesion]).as_dict() for k in ("dice", "hd95_mm", "avd_ml")},
        "detection": {k: outcomes.count(k) for k in ("tp", "fn", "fp", "tn")},
        "volume_agreement": volume_agreement([c["truth_ml"] for c in cases], [c["pred_ml"] for c in cases]),
    }


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _median(s: dict, digits: int = 2) -> str:
    if s["median"] is None:
        return "n/a"
    return f"{_fmt(s['median'], digits)} ({_fmt(s['ci_low'], digits)}-{_fmt(s['ci_high'], digits)}, n = {s['n']})"


def report(data: dict) -> str:
    lines = ["| case | reference ml | app ml | Dice | HD95 (mm) | detection | app ASPECTS (L / R) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in data["cases"]:
        asp = c["aspects"] or {}
        lines.append(f"| {c['case']} | {c['truth_ml']:.1f} | {c['pred_ml']:.1f} | {_fmt(c['dice'])} | "
                     f"{_fmt(c['hd95_mm'], 1)} | {c['detection'].upper()} | {asp.get('left')} / {asp.get('right')} |")
    s = data["summary"]
    d, va = s["detection"], s["volume_agreement"]
    lines += ["", f"{s['n']} studies, {s['n_lesion']} with a reference lesion (> {s['empty_ml']:g} ml). "
                  f"Median (bootstrap 90 % interval) over those: Dice {_median(s['dice'])}, "
                  f"HD95 {_median(s['hd95_mm'], 1)} mm, absolute volume difference {_median(s['avd_ml'], 1)} ml.",
              f"Detection: TP {d['tp']}, FN {d['fn']}, FP {d['fp']}, TN {d['tn']}. Volume, app - reference "
              f"(Bland-Altman, n = {va['n']}): bias {_fmt(va['bias_ml'], 1)} ml, 95 % limits "
              f"{_fmt(va['loa_low_ml'], 1)} to {_fmt(va['loa_high_ml'], 1)} ml."]
    for name, why in data["missing"].items():
        lines.append(f"not compared: {name}: {why}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="folder of app results, one sub-folder per study")
    ap.add_argument("--masks", type=Path, required=True, help="folder of reference masks named <study folder>.nii.gz")
    ap.add_argument("--empty-ml", type=float, default=0.0, help="a mask of at most this volume counts as empty (0)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)

    def run() -> int:
        data = agreement(args.runs, args.masks, args.empty_ml)
        print(report(data))
        if args.json:
            write_json(data, args.json)
        return 0

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
