"""The generator's two leukoaraiosis models side by side on chosen heads (docs/data.md,
"Leukoaraiosis in the head's own white matter").

    python -m aspects_research.tools.leukoaraiosis_models [--head ge:9009 invesalius:9012] [--out PNG]

Each HEAD:SEED is built in template pose without noise at 1 mm, as a normal study and as a
leukoaraiosis control with ``--leukoaraiosis legacy`` and ``white-matter``; the control minus its
normal twin, blurred by 3 mm (the scale the app compares at), is the disease's darkening. Prints,
per head and model, the darkening's integral (HU.ml) and the volume darker by > 2 HU than its mirror
image (its one-sided part, ml); ``--out`` also draws the slice where the legacy one-sided part is
largest: the head, each model's darkening and its darkening minus the mirror's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from aspects_research.phantoms import LEUKOARAIOSIS_MODELS, PhantomOptions, make_phantom

BLUR_MM = 3.0
ONE_SIDED_HU = 2.0
POSE = dict(generator="v2", contrast_loss="compress", pose=False, deform=False, noise_hu=0.0, split="val",
            thickness=1.0)


def darkening(anatomy: str, seed: int) -> Tuple[np.ndarray, Dict[str, Tuple[np.ndarray, np.ndarray]], float]:
    """The normal study's HU, per model the blurred darkening and its excess over the mirror
    image (the midline is physical x = 0 in template pose), and the voxel volume (ml)."""
    normal = make_phantom(seed, PhantomOptions(kind="normal", anatomy=anatomy, **POSE))  # type: ignore[arg-type]
    xs = normal.origin[0] + normal.pixel_mm * np.arange(normal.hu.shape[2])
    mirror = np.clip(np.round((-xs - normal.origin[0]) / normal.pixel_mm).astype(int), 0, normal.hu.shape[2] - 1)
    sigma = [BLUR_MM / normal.slice_spacing, BLUR_MM / normal.pixel_mm, BLUR_MM / normal.pixel_mm]
    maps = {}
    for model in LEUKOARAIOSIS_MODELS:
        control = make_phantom(seed, PhantomOptions(kind="leukoaraiosis", anatomy=anatomy, leukoaraiosis=model,
                                                    **POSE))  # type: ignore[arg-type]
        d = ndi.gaussian_filter((normal.hu - control.hu).astype(np.float32), sigma)
        maps[model] = (d, d - d[:, :, mirror])
    return normal.hu, maps, normal.pixel_mm ** 2 * normal.slice_spacing / 1000.0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--head", nargs="+", default=["ge:9009", "invesalius:9012"], help="ANATOMY:SEED (default ge:9009 invesalius:9012)")
    ap.add_argument("--out", type=Path, help="also draw the figure (PNG)")
    args = ap.parse_args(argv)
    rows: List[Tuple[str, int, np.ndarray, Dict[str, Tuple[np.ndarray, np.ndarray]]]] = []
    for item in args.head:
        anatomy, seed = item.split(":")
        hu, maps, voxel_ml = darkening(anatomy, int(seed))
        for model, (d, one) in maps.items():
            print(f"{anatomy} {seed} {model}: darkening {d.sum() * voxel_ml:.0f} HU.ml, "
                  f"one-sided (> {ONE_SIDED_HU:g} HU above the mirror) {(one > ONE_SIDED_HU).sum() * voxel_ml:.1f} ml")
        rows.append((anatomy, int(seed), hu, maps))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(len(rows), 1 + 2 * len(LEUKOARAIOSIS_MODELS), figsize=(18, 4.2 * len(rows)), squeeze=False)
        for i, (anatomy, seed, hu, maps) in enumerate(rows):
            z = int(np.argmax((maps["legacy"][1] > ONE_SIDED_HU).sum(axis=(1, 2))))
            ax[i, 0].imshow(hu[z], cmap="gray", vmin=0, vmax=60)
            ax[i, 0].set_title(f"{anatomy} head, seed {seed}\nz {z}", fontsize=10)
            for j, model in enumerate(("legacy", "white-matter")):
                d, one = maps[model]
                ax[i, 1 + 2 * j].imshow(d[z], cmap="magma", vmin=0, vmax=8)
                ax[i, 1 + 2 * j].set_title(f"{model}:\ndarkening ({BLUR_MM:g} mm blur)", fontsize=10)
                im = ax[i, 2 + 2 * j].imshow(one[z], cmap="bwr", vmin=-5, vmax=5)
                ax[i, 2 + 2 * j].set_title(f"{model}:\ndarkening minus mirror", fontsize=10)
            for a in ax[i]:
                a.axis("off")
        fig.colorbar(im, ax=ax.ravel().tolist(), shrink=0.5, label="HU")
        fig.savefig(args.out, dpi=60, bbox_inches="tight")
        print(f"figure -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
