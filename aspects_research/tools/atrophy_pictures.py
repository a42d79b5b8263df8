"""The generator's age-related atrophy on every anatomy source (docs/data.md, "Atrophy").

    python -m aspects_research.tools.atrophy_pictures [--seed 10104] [--severity 0 0.5 1] [--out PNG]

Each anatomy source is built as a normal study in template pose without noise (1 mm slices, a
256 matrix) at each severity. Prints, per source and severity, the parenchyma the atrophy took
(share of the source's tissue), the CSF-density share (< 12 HU) of the ASPECTS regions on each side
and its left / right ratio (atrophy is bilateral: the app's left-right comparisons should see
little of it); ``--out`` draws the same axial slice through the lateral ventricles for each.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from aspects_research.phantom_anatomy import ANATOMIES
from aspects_research.phantoms import PhantomOptions, make_phantom

CSF_LIKE_HU = 12.0
POSE = dict(generator="v2", kind="normal", pose=False, deform=False, noise_hu=0.0, split="test", thickness=1.0,
            matrix=256)


def csf_share(hu: np.ndarray, regions: np.ndarray, x_mm: np.ndarray) -> Tuple[float, float]:
    """CSF-density share (< :data:`CSF_LIKE_HU`) of the ASPECTS regions on the patient's left
    (x > 0, LPS) and right."""
    out = []
    for side in (x_mm[None, None, :] > 0, x_mm[None, None, :] < 0):
        r = (regions > 0) & side
        out.append(float(np.count_nonzero(r & (hu < CSF_LIKE_HU))) / max(1, int(np.count_nonzero(r))))
    return out[0], out[1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=10104)
    ap.add_argument("--severity", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--anatomy", nargs="+", default=list(ANATOMIES), choices=ANATOMIES)
    ap.add_argument("--out", type=Path, help="also draw the figure (PNG)")
    args = ap.parse_args(argv)
    rows: List[Tuple[str, List[Tuple[float, np.ndarray]]]] = []
    for anatomy in args.anatomy:
        row = []
        for sev in args.severity:
            ph = make_phantom(args.seed, PhantomOptions(anatomy=anatomy, atrophy_severity=sev, **POSE))  # type: ignore[arg-type]
            x = ph.origin[0] + ph.pixel_mm * np.arange(ph.hu.shape[2])
            left, right = csf_share(ph.hu, ph.regions, x)
            lost = ph.truth.get("atrophy", {}).get("tissue_lost_fraction", 0.0)
            print(f"{anatomy} severity {sev:g}: parenchyma lost {100 * lost:.1f} %, CSF-density share of the "
                  f"regions left {100 * left:.1f} % right {100 * right:.1f} % (ratio {left / max(right, 1e-9):.2f}); "
                  f"ASPECTS truth {ph.truth['aspects']['left']} / {ph.truth['aspects']['right']}", flush=True)
            # the axial slice with the most region voxels above the basal ganglia: the ventricles' bodies
            per_z = (ph.regions > 0).sum(axis=(1, 2))
            z = int(np.argmax(per_z)) + int(0.25 * np.count_nonzero(per_z))
            row.append((sev, ph.hu[min(z, ph.hu.shape[0] - 1)]))
        rows.append((anatomy, row))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(len(rows), len(args.severity), figsize=(3.4 * len(args.severity), 3.6 * len(rows)),
                               squeeze=False)
        for i, (anatomy, row) in enumerate(rows):
            for j, (sev, sl) in enumerate(row):
                ys, xs = np.nonzero(sl > -200)
                crop = sl[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if ys.size else sl
                ax[i, j].imshow(crop, cmap="gray", vmin=0, vmax=70)
                ax[i, j].set_title(f"{anatomy}, severity {sev:g}", fontsize=10)
                ax[i, j].axis("off")
        fig.suptitle(f"age-related atrophy (seed {args.seed}, template pose, no noise; W70 L35)", fontsize=11)
        fig.savefig(args.out, dpi=70, bbox_inches="tight")
        print(f"figure -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
