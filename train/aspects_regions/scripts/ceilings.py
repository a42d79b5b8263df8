"""Reference figures for the region model: what warping the atlas can reach on a datalist.

    cd train/aspects_regions && python -m scripts.ceilings --datalist ../../build/data/aligned/regions.json \
        [--key validation] [--cases 5] [--steps 150] [--threads 2]

For each case, mean region Dice (20 regions, aligned space, against the aligned truth) of:
- ``identity``: the affine-aligned atlas, i.e. ``AtlasWarpNet`` with a zero displacement;
- ``image``: a free displacement field (same 16 mm grid as the model) fitted to the study alone by
  local NCC of the warped template and the image, as a registration would (no labels);
- ``oracle``: a free field fitted to the truth labels (DiceCE) with the model's smoothness term:
  the best any smooth warp of this atlas can do against this truth.
A model that only sees the image should land between ``image`` and ``oracle``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import List

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import DiceCELoss, LocalNormalizedCrossCorrelationLoss

from aspects.model_io import normalise, to_model_layout
from aspects_research.warp_loss import smoothness
from aspects_research.atlas_warp_net import AtlasWarpNet
from .speed import region_dice


def _field_shape(net: AtlasWarpNet, size: List[int]) -> List[int]:
    """Shape of the model's displacement grid for an input of ``size``."""
    return [s // (net.factor * net.disp_pool) for s in size]


def fit(net: AtlasWarpNet, x: torch.Tensor, y: torch.Tensor, use_labels: bool, steps: int,
        smooth_weight: float) -> torch.Tensor:
    disp = torch.zeros(1, 3, *_field_shape(net, list(x.shape[2:])), requires_grad=True)
    opt = torch.optim.Adam([disp], lr=0.01)
    dice_ce, lncc = DiceCELoss(to_onehot_y=True, softmax=True), LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=5)
    x_low = net.pool(x)
    for _ in range(steps):
        opt.zero_grad()
        if use_labels:
            loss = dice_ce(torch.log(net.warp(disp, list(x.shape[2:])).clamp_min(net.eps)), y)
        else:
            loss = lncc(net.warp_template(disp, list(x_low.shape[2:])), x_low)
        (loss + smooth_weight * smoothness(disp)).backward()
        opt.step()
    return disp.detach()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datalist", type=Path, required=True)
    ap.add_argument("--key", default="validation")
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--smooth_weight", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    entries = json.loads(args.datalist.read_text())[args.key][: args.cases]
    net = AtlasWarpNet(21, (16, 32, 64, 128), (2, 2, 2)).eval()
    rows = []
    base = args.datalist.parent
    for n, e in enumerate(entries, 1):
        t0 = time.monotonic()
        img = normalise(sitk.GetArrayFromImage(sitk.ReadImage(str(base / e["image"]))))
        lab = to_model_layout(sitk.GetArrayFromImage(sitk.ReadImage(str(base / e["label"]))).astype(np.int64))
        x = torch.from_numpy(to_model_layout(img))[None, None]
        y = torch.from_numpy(lab)[None, None]
        size = list(x.shape[2:])
        zero = torch.zeros(1, 3, *_field_shape(net, size))
        row = {"case": Path(e["image"]).name}
        with torch.no_grad():
            row["identity"] = region_dice(net.warp(zero, size).argmax(1)[0].numpy(), lab)
        for name, use_labels in (("image", False), ("oracle", True)):
            disp = fit(net, x, y, use_labels, args.steps, args.smooth_weight)
            with torch.no_grad():
                row[name] = region_dice(net.warp(disp, size).argmax(1)[0].numpy(), lab)
        rows.append(row)
        print(f"[{n}/{len(entries)}] {row['case']}: identity {row['identity']:.3f}  image-only registration "
              f"{row['image']:.3f}  oracle {row['oracle']:.3f}  ({time.monotonic() - t0:.0f} s)", flush=True)
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("identity", "image", "oracle")}
    print("mean: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
