"""What the generator paints, region by region, under each model of grey-white contrast loss.

    python -m aspects_research.tools.painted_drop --seed 4020 [--seed ...] [--split test] [--png FIG]

Each seed is made as ``tools/make_v2_data.sh`` makes an acute study (``aspects-make-phantoms
--generator v2 --kind acute --split S --seed N``) once per model of ``phantoms.CONTRAST_LOSS``, and
once as its lesion-free twin (the same seed as a normal study: same head, pose, calcifications and
noise), so the difference is exactly the painted change on the source slices. For each region the
truth infarcts by at least 10 %, it prints the infarcted share and the mean drop over the region's
infarcted voxels divided by the study's nominal drop. ``--png``: for the first seed, the slice
through the middle of its infarcted caudate (else of its infarct): the lesion-free slice and the
drop under each model (docs/data.md, "Grey-white contrast loss").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from aspects.labels import REGION_CODES, SIDES, label_value
from aspects_research.phantoms import CONTRAST_LOSS, Phantom, PhantomOptions, make_phantom

MIN_FRACTION = 0.1


def region_drops(lesioned: Phantom, twin: Phantom) -> Dict[str, Dict[str, float]]:
    """Per "<side initial><code>" region infarcted >= 10 % by the truth: its infarcted fraction and
    the mean painted drop over its infarcted voxels divided by the nominal HU drop."""
    drop = twin.hu - lesioned.hu
    infarct = lesioned.infarct > 0
    nominal = lesioned.params.hu_drop
    out: Dict[str, Dict[str, float]] = {}
    for side in SIDES:
        for code in REGION_CODES:
            region = lesioned.regions == label_value(side, code)
            n = int(region.sum())
            hit = region & infarct
            if n == 0 or hit.sum() < MIN_FRACTION * n:
                continue
            out[f"{side[0]}{code}"] = {"fraction": float(hit.sum()) / n,
                                      "drop_ratio": float(drop[hit].mean()) / nominal}
    return out


def make_set(seed: int, split: str, matrix: int = 512) -> Dict[str, Phantom]:
    """The acute study under each contrast-loss model and its lesion-free twin ("normal")."""
    base = dict(generator="v2", split=split, matrix=matrix)
    made = {mode: make_phantom(seed, PhantomOptions(kind="acute", contrast_loss=mode, **base)) for mode in CONTRAST_LOSS}
    made["normal"] = make_phantom(seed, PhantomOptions(kind="normal", **base))
    return made


def write_figure(made: Dict[str, Phantom], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ph = made[CONTRAST_LOSS[0]]
    infarct = ph.infarct > 0
    caudate = np.isin(ph.regions, [label_value(s, "C") for s in SIDES])
    where = caudate & infarct if (caudate & infarct).any() else infarct
    zs = np.nonzero(where.any(axis=(1, 2)))[0]
    z = int(zs[len(zs) // 2])
    nominal = ph.params.hu_drop
    fig, ax = plt.subplots(1, 1 + len(CONTRAST_LOSS), figsize=(6 * (1 + len(CONTRAST_LOSS)), 6))
    ax[0].imshow(made["normal"].hu[z], cmap="gray", vmin=15, vmax=55)
    ax[0].contour(infarct[z], [0.5], colors="red", linewidths=0.8)
    ax[0].contour(caudate[z], [0.5], colors="yellow", linewidths=0.8)
    ax[0].set_title(f"seed {ph.params.seed}: lesion-free twin, slice {z} (W40 L35)\ntruth infarct red, caudate yellow")
    for a, mode in zip(ax[1:], CONTRAST_LOSS):
        d = made["normal"].hu[z] - made[mode].hu[z]
        im = a.imshow(d, cmap="RdBu_r", vmin=-2 * nominal, vmax=2 * nominal)
        a.contour(infarct[z], [0.5], colors="black", linewidths=0.6)
        a.set_title(f"painted drop, {mode!r} (nominal {nominal:.1f} HU)\nred darker, blue brighter")
        fig.colorbar(im, ax=a, fraction=0.046, pad=0.02, label="HU")
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, action="append", required=True, help="acute study seed (repeatable)")
    ap.add_argument("--split", default="test", help="lesion-shape split, as make_v2_data.sh (default test)")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns (smaller only for quick tests)")
    ap.add_argument("--png", type=Path, help="figure of the first seed")
    a = ap.parse_args(argv)
    rows: List[str] = []
    for k, seed in enumerate(a.seed):
        made = make_set(seed, a.split, a.matrix)
        p = made[CONTRAST_LOSS[0]].params
        print(f"seed {seed}: {p.anatomy}, {p.thickness:g} mm, nominal {p.hu_drop:.1f} HU", flush=True)
        by_mode = {mode: region_drops(made[mode], made["normal"]) for mode in CONTRAST_LOSS}
        for region in by_mode[CONTRAST_LOSS[0]]:
            ratios = ", ".join(f"{mode} {by_mode[mode][region]['drop_ratio']:.2f}" for mode in CONTRAST_LOSS)
            rows.append(f"  {region:4s} {by_mode[CONTRAST_LOSS[0]][region]['fraction']:5.0%} infarcted; drop / nominal: {ratios}")
            print(rows[-1])
        if k == 0 and a.png:
            write_figure(made, a.png)
            print(f"figure: {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
