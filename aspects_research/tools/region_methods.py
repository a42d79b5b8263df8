#!/usr/bin/env python
"""Region methods side by side on phantoms with truth: the app's LNCC atlas warp against the SyN
atlas registration it replaced (and the affine-only atlas), same preprocessing, same cases.

    aspects-region-methods --cases DIR [--limit N] [--json OUT.json]

Per case: the app's preprocessing (``aspects.preprocess``) once, then each method's labels on the
aligned grid, carried to the source grid as the app does (``to_source``) and compared with
``truth/regions.nii.gz``: mean Dice over the 20 regions, and the method's own time (s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


from aspects.atlas import load_atlas  # noqa: E402
from aspects_research.metrics import counts, dice  # noqa: E402
from aspects.preprocess import preprocess, to_source  # noqa: E402
from aspects.region_atlas import atlas_on_aligned, atlas_regions  # noqa: E402
from aspects.registration import syn_warp  # noqa: E402
from aspects_research.tools.qc_calibration import read_dicom_dir  # noqa: E402

SYN_WINDOW = (0.0, 80.0)  # the replaced method's intensity window (CSF to grey matter / blood)


def syn_regions(pre, atlas) -> sitk.Image:
    """The replaced method: SyN (4 mm, 40 iterations, MI) of the template onto the patient."""
    def windowed(img: sitk.Image) -> sitk.Image:
        return sitk.Clamp(sitk.Cast(img, sitk.sitkFloat32), sitk.sitkFloat32, *SYN_WINDOW)

    (warped,) = syn_warp(windowed(pre.aligned), windowed(pre.template), [atlas.labels], [True])
    arr = sitk.GetArrayFromImage(warped)
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(pre.aligned)
    return out


def affine_regions(pre, atlas) -> sitk.Image:
    labels, _ = atlas_on_aligned(pre, atlas)
    labels[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(pre.aligned)
    return out


METHODS = {"lncc": atlas_regions, "syn": syn_regions, "affine": affine_regions}


def region_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = [dice(counts(pred == v, truth == v)) for v in range(1, 21)]
    return float(np.mean([1.0 if s is None else s for s in scores]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    atlas = load_atlas()
    cases = [c for c in sorted(args.cases.iterdir()) if (c / "truth.json").is_file()]
    cases = cases[: args.limit] if args.limit else cases
    rows = []
    for i, case in enumerate(cases, 1):
        pre = preprocess(read_dicom_dir(case / "dicom"), atlas)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "truth" / "regions.nii.gz")))
        row = {"case": case.name}
        for name, method in METHODS.items():
            t0 = time.perf_counter()
            labels = method(pre, atlas)
            row[f"{name}_s"] = round(time.perf_counter() - t0, 2)
            row[f"{name}_dice"] = round(region_dice(sitk.GetArrayFromImage(to_source(pre, labels)), truth), 4)
        rows.append(row)
        print(f"[{i}/{len(cases)}] " + json.dumps(row), flush=True)
    summary = {"cases": len(rows)}
    for name in METHODS:
        summary[f"{name}_dice_mean"] = round(float(np.mean([r[f"{name}_dice"] for r in rows])), 4)
        summary[f"{name}_s_median"] = round(statistics.median(r[f"{name}_s"] for r in rows), 2)
    summary["lncc_minus_syn_per_case"] = [round(r["lncc_dice"] - r["syn_dice"], 4) for r in rows]
    print("summary " + json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
