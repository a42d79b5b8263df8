"""Region model vs atlas SyN on the same aligned cases: time and Dice against truth.

    cd train/aspects_regions && python -m scripts.speed --ts ../../models/aspects_regions/aspects_regions.ts \
        --datalist ../../build/data/aligned_test/regions.json [--cases 3] [--threads 2] [--no-syn]

Both methods start from the same aligned volume (the app's preprocessing is shared and not
timed): the model is one TorchScript forward pass (median of 3 after a warm-up); the atlas path is
the app's fallback ``aspects.region_atlas.atlas_regions`` (SyN of the aligned template onto the
case, atlas labels carried along, kept inside the brain). Prints per-case figures and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

from aspects.model_io import from_model_layout, normalise, to_model_layout
from aspects_research.metrics import counts, dice


def region_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean Dice over the 20 regions present in ``truth`` (a region missing from both counts 1)."""
    scores = [dice(counts(pred == v, truth == v)) for v in range(1, 21)]
    return float(np.mean([1.0 if s is None else s for s in scores]))


def aligned_case(img: sitk.Image, template: sitk.Image) -> SimpleNamespace:
    """What ``atlas_regions`` reads of a ``Preprocessed``, rebuilt from a saved aligned image
    (skull-stripped: the brain mask is its non-zero voxels)."""
    return SimpleNamespace(aligned=img, template=template, brain_mask=sitk.Cast(img != 0, sitk.sitkUInt8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ts", type=Path, required=True)
    ap.add_argument("--datalist", type=Path, required=True)
    ap.add_argument("--key", default="validation")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-syn", action="store_true", help="time the model only")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model = torch.jit.load(str(args.ts), map_location="cpu").eval()
    entries = json.loads(args.datalist.read_text())[args.key][: args.cases]
    base = args.datalist.parent
    atlas = None
    rows = []
    for e in entries:
        img = sitk.ReadImage(str(base / e["image"]), sitk.sitkFloat32)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(base / e["label"])))
        x = torch.from_numpy(to_model_layout(normalise(sitk.GetArrayFromImage(img)))[None, None])
        times = []
        with torch.inference_mode():
            model(x)
            for _ in range(3):
                t0 = time.perf_counter()
                logits = model(x)
                times.append(time.perf_counter() - t0)
        pred = from_model_layout(torch.argmax(logits[0], 0).numpy().astype(np.uint8))
        row = {"case": Path(e["image"]).name, "model_s": statistics.median(times), "model_dice": region_dice(pred, truth)}
        if not args.no_syn:
            from aspects.atlas import load_atlas
            from aspects.preprocess import template_on_aligned
            from aspects.region_atlas import atlas_regions

            if atlas is None:
                atlas = load_atlas()
                template = template_on_aligned(atlas.template)
            t0 = time.perf_counter()
            warped = atlas_regions(aligned_case(img, template), atlas)
            row["syn_s"] = time.perf_counter() - t0
            row["syn_dice"] = region_dice(sitk.GetArrayFromImage(warped), truth)
        rows.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    summary = {"cases": len(rows), "threads": args.threads,
               "model_s_median": statistics.median(r["model_s"] for r in rows),
               "model_mean_dice": float(np.mean([r["model_dice"] for r in rows]))}
    if not args.no_syn:
        summary["syn_s_median"] = statistics.median(r["syn_s"] for r in rows)
        summary["syn_mean_dice"] = float(np.mean([r["syn_dice"] for r in rows]))
        summary["speedup"] = summary["syn_s_median"] / summary["model_s_median"]
    print("summary", json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
