"""Hemispheric asymmetry of the generator-v2 anatomy sources, per ASPECTS region (docs/data.md).

    python -m aspects_research.tools.anatomy_asymmetry [--sources template scct ge invesalius]
        [--figure docs/img/ge_asymmetry.png] [--json OUT.json]

For every source, on the template-aligned crop grid the generator builds its studies on, and with
the atlas labels as the generator places them (through the SyN registration for the real heads):
the mean of HU minus the mirrored HU on the app's 2 mm aligned grid, against the contralateral
counterpart deformed onto it as the app compares hemispheres, and against the plain mirror
(:func:`aspects_research.phantom_anatomy.hemisphere_comparison`, :func:`~aspects_research.phantom_anatomy.region_differences`),
over each region's comparable parenchyma; left regions (negative = darker than the other side). Real heads are measured without
and with the low-frequency hemispheric balance (:func:`~aspects_research.phantom_anatomy.hemispheric_balance`),
with the residual fine-texture noise of each (:func:`~aspects_research.phantom_anatomy.residual_noise_hu`).
``--figure``: the GE head's smooth mirror difference on an axial slice through the basal ganglia
and one through the centrum semiovale, before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from aspects.labels import REGION_CODES as CODES
from aspects_research import phantom_anatomy as PA
from aspects_research.phantoms import Anatomy, source_anatomy

REAL = ("ge", "invesalius")
FIGURE_Z_MM = (2.0, 30.0)  # template z (mm): basal ganglia / insula; centrum semiovale


def measure(anat: Anatomy) -> Tuple[Dict[str, object], PA.HemisphereComparison]:
    """(figures, comparison): left- and right-region differences against the deformed
    counterpart and the plain mirror (code -> HU), and the fine-texture noise."""
    ref = PA.crop_reference(anat.index_to_phys, anat.brain_hu.shape)
    inside = anat.shell_dist <= 0
    cmp = PA.hemisphere_comparison(anat.brain_hu, inside, ref)
    diff = PA.region_differences(cmp, anat.labels, ref)
    out: Dict[str, object] = {"noise_hu": round(PA.residual_noise_hu(anat.brain_hu, inside), 2)}
    for key, d in diff.items():
        out[key] = {"left": {c: round(d[i + 11], 2) for i, c in enumerate(CODES)},
                    "right": {c: round(d[i + 1], 2) for i, c in enumerate(CODES)}}
    return out, cmp


def smooth_difference(cmp: PA.HemisphereComparison) -> np.ndarray:
    """Image minus deformed counterpart at the balance scale over comparable parenchyma (HU)."""
    w = cmp.parenchyma.astype(np.float32)
    sig = PA.BALANCE_SIGMA_MM / np.asarray(cmp.grid.GetSpacing(), float)[::-1]
    den = ndi.gaussian_filter(w, sig)
    d = ndi.gaussian_filter((cmp.hu - cmp.contra) * w, sig) / np.maximum(den, 1e-3)
    return np.where((den > 0.05) & cmp.brain, d, np.nan)


def figure(before: PA.HemisphereComparison, after: PA.HemisphereComparison, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = before.grid
    fig, axes = plt.subplots(len(FIGURE_Z_MM), 2, figsize=(7.5, 3.6 * len(FIGURE_Z_MM)))
    im = None
    for row, z_mm in enumerate(FIGURE_Z_MM):
        k = int(round(grid.TransformPhysicalPointToContinuousIndex((0.0, 0.0, z_mm))[2]))
        for col, (cmp, title) in enumerate(((before, "as registered"), (after, "balanced"))):
            ax = axes[row, col]
            ax.imshow(cmp.hu[k], cmap="gray", vmin=0, vmax=80, origin="lower")
            im = ax.imshow(np.ma.masked_invalid(smooth_difference(cmp)[k]), cmap="RdBu_r", vmin=-4, vmax=4, alpha=0.7,
                           origin="lower")
            ax.set_title(f"GE head, z = {z_mm:g} mm, {title}", fontsize=9)
            ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.6,
                 label=f"HU minus contralateral ({PA.BALANCE_SIGMA_MM:g} mm scale); patient left = image right")
    fig.savefig(path, dpi=80)
    print(f"figure: {path}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", nargs="+", default=list(PA.ANATOMIES), choices=PA.ANATOMIES)
    ap.add_argument("--figure", help="PNG of the GE head's smooth mirror difference before / after")
    ap.add_argument("--json", help="write the figures as JSON")
    a = ap.parse_args(argv)
    rows: Dict[str, Dict[str, object]] = {}
    cmps: Dict[str, PA.HemisphereComparison] = {}
    for name in a.sources:
        states = (("as registered", False), ("balanced", True)) if name in REAL else (("", True),)
        for state, bal in states:
            key = f"{name} {state}".strip()
            anat = source_anatomy(name, None, bal)
            rows[key], cmps[key] = measure(anat)
            if name in REAL and bal:
                add = anat.brain_hu - source_anatomy(name, None, False).brain_hu
                rows[key]["added_hu_max"] = round(float(add.max()), 2)
                rows[key]["added_ml_over_0.5hu"] = round(float((add > 0.5).sum()) / 1000.0, 1)
    for kind, what in (("deformed", "its contralateral counterpart deformed onto it (as the app compares)"),
                       ("mirror", "its plain mirror about the template mid-sagittal plane")):
        print(f"\nLeft region minus {what}: parenchyma mean, HU (negative = left darker)")
        print("| source | " + " | ".join(CODES) + " | max abs | texture noise (HU) |")
        print("| --- | " + " | ".join("---" for _ in CODES) + " | --- | --- |")
        for key, r in rows.items():
            left = r[kind]["left"]  # type: ignore[index]
            worst = max(abs(v) for v in left.values())
            print(f"| {key} | " + " | ".join(f"{left[c]:+.2f}" for c in CODES) + f" | {worst:.2f} | {r['noise_hu']} |")
    for key, r in rows.items():
        if "added_hu_max" in r:
            print(f"{key}: added up to {r['added_hu_max']} HU; {r['added_ml_over_0.5hu']} ml raised by more than 0.5 HU")
    if a.figure and "ge as registered" in cmps:
        figure(cmps["ge as registered"], cmps["ge balanced"], a.figure)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
