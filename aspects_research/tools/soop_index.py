"""Index of the SOOP lesion masks for the phantom generator (run once; the CSV is committed).

    python -m aspects_research.tools.soop_index [--real ../shared/data/real] [--atlas atlas] [--out aspects_research/phantom_assets/soop_index.csv]

Each of the 1449 masks is placed on the atlas template grid (aspects_research.phantom_lesions.onto_grid:
same MNI voxels, no interpolation) and measured inside the template brain:
- ``volume_ml``: lesion volume inside the brain; ``mca_ml``: inside the MCA territory of the
  arterial atlas (atlas/territories.nii.gz, Liu et al. 2023); ``outside_mca_ml``: inside the ACA,
  PCA or vertebrobasilar territories;
- ``group``: ``tiny`` (< 0.3 ml in the brain), ``mca`` (>= 0.5 ml or >= 25 % of it in the MCA
  territory: acute MCA cases), ``non_mca`` (< 5 % in the MCA territory and no voxel within 3 mm
  of an ASPECTS region: negative controls, ASPECTS 10), else ``mixed`` (not used);
- ``side``: the hemisphere holding more of it; ``involved``: the regions it covers by >= 10 %
  in template space (a guide only: the truth of a case is measured on its own grid);
- ``split``: aspects_research.phantom_lesions.split_of(mask ID).
Prints the counts per split and group. Licence of the masks: BSD-2-Clause (derivatives repository)
and CC0 (source data set); this table is derived from them (docs/data.md).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]

from aspects.atlas import load_atlas, mca_territory, outside_mca  # noqa: E402
from aspects.labels import REGION_CODES, SIDES, label_value  # noqa: E402
from aspects_research.phantom_lesions import INDEX_FILE, default_real_data, mask_id_of, onto_grid, split_of  # noqa: E402

TINY_ML = 0.3
MCA_MIN_ML = 0.5
MCA_MIN_FRACTION = 0.25
NON_MCA_MAX_FRACTION = 0.05
NON_MCA_GAP_MM = 3
COLUMNS = ("mask_id", "split", "group", "volume_ml", "mca_ml", "outside_mca_ml", "side", "involved")


def classify(volume_ml: float, mca_ml: float, near_regions: bool) -> str:
    if volume_ml < TINY_ML:
        return "tiny"
    if mca_ml >= MCA_MIN_ML or mca_ml >= MCA_MIN_FRACTION * volume_ml:
        return "mca"
    if mca_ml < NON_MCA_MAX_FRACTION * volume_ml and not near_regions:
        return "non_mca"
    return "mixed"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=default_real_data())
    ap.add_argument("--atlas", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=INDEX_FILE)
    a = ap.parse_args(argv)
    atlas = load_atlas(a.atlas)
    brain = sitk.GetArrayFromImage(atlas.template) > 0.5
    labels = sitk.GetArrayFromImage(atlas.labels)
    terr = sitk.GetArrayFromImage(atlas.territories)
    mca, other = mca_territory(terr) & brain, outside_mca(terr) & brain
    near = ndi.binary_dilation(labels > 0, iterations=NON_MCA_GAP_MM)
    region_n = np.bincount(labels.ravel(), minlength=21)
    nx = labels.shape[2]
    x_left = np.arange(nx) > nx // 2  # LPS: x grows to the patient's left; the central column is the midline
    files = sorted((a.real / "soop_lesions_mni" / "masks").glob("bwsrsub-*_lesion.nii.gz"), key=lambda p: int(mask_id_of(p)))
    if not files:
        print(f"error[2]: no SOOP masks under {a.real / 'soop_lesions_mni' / 'masks'}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = []
    for k, path in enumerate(files, 1):
        m = onto_grid(sitk.ReadImage(str(path)), atlas.template) > 0
        inb = m & brain
        vol = float(inb.sum()) / 1000.0
        left_n = int(inb[:, :, x_left].sum())
        side = "left" if left_n * 2 > int(inb.sum()) else "right"
        cover = np.bincount(labels[inb], minlength=21)
        inv = {s: [c for c in REGION_CODES if cover[label_value(s, c)] >= 0.1 * region_n[label_value(s, c)]] for s in SIDES}
        rows.append({"mask_id": mask_id_of(path), "split": split_of(mask_id_of(path)),
                     "group": classify(vol, float((m & mca).sum()) / 1000.0, bool((m & near).any())),
                     "volume_ml": f"{vol:.3f}", "mca_ml": f"{float((m & mca).sum()) / 1000.0:.3f}",
                     "outside_mca_ml": f"{float((m & other).sum()) / 1000.0:.3f}", "side": side,
                     "involved": " ".join(f"{s}:{','.join(v)}" for s, v in inv.items() if v)})
        if k % 100 == 0:
            print(f"[{k}/{len(files)}] {time.perf_counter() - t0:.0f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print("| split | " + " | ".join(("mca", "non_mca", "mixed", "tiny")) + " |")
    for s in ("train", "val", "test"):
        print(f"| {s} | " + " | ".join(str(sum(r["split"] == s and r["group"] == g for r in rows))
                                       for g in ("mca", "non_mca", "mixed", "tiny")) + " |")
    print(f"wrote {a.out} ({len(rows)} masks, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
