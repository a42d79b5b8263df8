"""How much of each real acute lesion a left-right comparison cannot see.

Every detector of the app compares a voxel with its mirror image (the asymmetry baseline, the
region evidence, the infarct model's mirror channel): where an infarct covers both the voxel and
its mirror, the difference is zero and the lesion is invisible to it. This tool measures that
blind spot on the 1449 SOOP acute stroke masks (MNI space, drawn on DWI; Absher et al. 2024):
per mask, the share of its volume whose mirror image about the MNI mid-sagittal plane (x = 0)
lies within ``tolerance`` mm of the lesion (the *mirrored share*), and the lesion volume on each
side, summarised by the lesion groups of ``phantom_assets/soop_index.csv``.

    python -m aspects_research.tools.bilateral_lesions [--tolerance 0 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects_research.phantom_lesions import load_index, mask_path

# The SOOP grid (157 x 189 x 136, 1 mm, x = 78 - i): the mirror of column i is column 156 - i.
MNI_MIRROR_COLUMN_SUM = 156
SHARES = (0.1, 0.25, 0.5)


def mirrored_share(mask: np.ndarray, tolerance_vox: int = 0, axis: int = -1) -> float:
    """Share of ``mask``'s voxels whose mirror image (``mask`` reversed along ``axis``, which must
    be symmetric about the array's centre) lies within ``tolerance_vox`` voxels of the mask: the
    part of the lesion a mirror comparison sees lesion against lesion. 0 for an empty mask."""
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    if n == 0:
        return 0.0
    reach = mask
    if tolerance_vox > 0:
        ball = ndi.generate_binary_structure(3, 1)
        reach = ndi.binary_dilation(mask, ball, iterations=int(tolerance_vox))
    return float((mask & np.flip(reach, axis=axis)).sum()) / n


def side_volumes_ml(mask: np.ndarray, voxel_ml: float = 0.001, axis: int = -1) -> Dict[str, float]:
    """Lesion volume either side of the array's centre plane along ``axis`` (the centre column of
    an odd size counted on neither)."""
    mask = np.asarray(mask, bool)
    size = mask.shape[axis]
    lo = np.take(mask, range(0, size // 2), axis=axis).sum()
    hi = np.take(mask, range((size + 1) // 2, size), axis=axis).sum()
    return {"low_index": float(lo) * voxel_ml, "high_index": float(hi) * voxel_ml}


def _summary(rows: List[dict], tolerances: Sequence[int]) -> List[str]:
    lines = []
    groups = sorted({r["group"] for r in rows})
    for tol in tolerances:
        key = f"share_{tol}mm"
        lines.append(f"mirrored share within {tol} mm (of lesion volume):")
        for group in groups + ["all"]:
            sel = [r for r in rows if group in ("all", r["group"])]
            shares = np.array([r[key] for r in sel])
            vol = np.array([r["volume_ml"] for r in sel])
            counts = ", ".join(f">= {s:.2f}: {int((shares >= s).sum())}" for s in SHARES)
            pooled = float((shares * vol).sum() / max(vol.sum(), 1e-9))
            lines.append(f"  {group:8s} n={len(sel):4d}  masks with share {counts};  "
                         f"volume-weighted share {pooled:.3f}")
    both = [r for r in rows if min(r["left_ml"], r["right_ml"]) >= 1.0]
    lines.append(f"masks with >= 1 ml on each side: {len(both)} of {len(rows)}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tolerance", type=int, nargs="+", default=[0, 3], help="mm (= voxels) of slack around the mirror")
    ap.add_argument("--json", help="per-mask figures to this file")
    ap.add_argument("--limit", type=int, default=0, help="first N masks only (a quick look)")
    a = ap.parse_args(argv)
    index = load_index()
    if a.limit:
        index = index[: a.limit]
    rows = []
    for k, e in enumerate(index):
        img = sitk.ReadImage(str(mask_path(e.mask_id)))
        arr = sitk.GetArrayFromImage(img) > 0  # (z, y, x), x = column i
        if arr.shape[-1] - 1 != MNI_MIRROR_COLUMN_SUM:
            print(f"mask {e.mask_id}: unexpected grid {arr.shape}", file=sys.stderr)
            return 1
        # the lesion's bounding box, widened symmetrically in x so that the mirror stays exact
        zz, yy, xx = np.nonzero(arr)
        t = max(a.tolerance) + 1
        x0 = max(0, min(int(xx.min()), MNI_MIRROR_COLUMN_SUM - int(xx.max())) - t)
        sub = arr[max(0, zz.min() - t): zz.max() + t + 1, max(0, yy.min() - t): yy.max() + t + 1,
                  x0: MNI_MIRROR_COLUMN_SUM - x0 + 1]
        sides = side_volumes_ml(sub)
        row = {"mask_id": e.mask_id, "split": e.split, "group": e.group, "volume_ml": e.volume_ml,
               # x = 78 - i and x < 0 is patient left (the data README): high columns are left
               "right_ml": round(sides["low_index"], 3), "left_ml": round(sides["high_index"], 3)}
        for tol in a.tolerance:
            row[f"share_{tol}mm"] = round(mirrored_share(sub, tol), 4)
        rows.append(row)
        if (k + 1) % 200 == 0:
            print(f"  {k + 1} / {len(index)} masks", file=sys.stderr, flush=True)
    print("\n".join(_summary(rows, a.tolerance)))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
