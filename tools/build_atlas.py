#!/usr/bin/env python
"""Build the ASPECTS atlas (docs/atlas.md) from the public templates in ``--templates``.

    python tools/build_atlas.py --templates ../shared/data/templates --out atlas

Inputs (read only): ``miplab_ncct_sym/`` (symmetric NCCT template, arterial territories of
Liu et al. 2023, CT-TIQUA anatomical regions, one 257^3 1 mm grid) and ``muschelli_ct/``
(CQ500 CT template with caudate / putamen / pallidum labels, another space).

Method, in order:
1. Orientation: the miplab header is checked against the anatomy of its own label names
   (Right_* labels at smaller LPS x than Left_*, frontal anterior to occipital, cerebrum above
   cerebellum); only then is it trusted.  Its odd origin (x from -255.5 in RAS) is replaced.
2. Grid: the mid-sagittal plane is measured from the template (the x shift of the mirrored brain
   that matches it best), then the volume is translated (no interpolation: voxel-aligned) onto a
   1 mm identity-direction LPS grid cropped to the brain + 8 mm, with the plane at x = 0 and the
   brain's y/z bounding-box centre at 0.  The template is made exactly symmetric (mean with its
   mirror inside the symmetric brain mask).
3. C / L: the miplab basal-ganglia label (caudate + lentiform in one) is split by registering the
   Muschelli template to ours (antspyx SyN, fixed seed, one thread) and giving each basal-ganglia
   voxel to the nearer of the warped caudate (36) or putamen + pallidum (55, 57) labels
   (warped with genericLabel: nearest neighbour on an integer label map).
4. Slabs (physical z, inclusive): BG = inferior to superior extent of the lentiform nucleus
   ("top of the basal ganglia"); SG = from the slice above the lentiform to the superior extent
   of the lateral-ventricle bodies.
5. Regions of the RIGHT hemisphere (x < 0), then mirrored to the left (labels + 10), so both
   sides are exact mirrors:  C, L as above; I = insular cortex label; IC = white matter that
   closes the gaps between caudate, lentiform and thalamus in each axial slice of the BG slab;
   in the BG slab M1 = MCA frontal territory, M2 = MCA temporal territory in front of the coronal
   plane at the insula's posterior end, M3 = the temporal territory behind it + MCA parietal and
   occipital (the parietal territory barely reaches the BG slab); in the SG slab M4 / M5 / M6 =
   the MCA territory directly above M1 / M2 / M3 (axial footprints), because the temporal
   territory nearly vanishes there.  Brain tissue only: CSF, ventricles, nuclei removed.
6. Writes template, label map, labels.json, levels.json, LICENSE.md and a PNG montage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

# Deterministic registration: one ITK thread (set before antspyx/SimpleITK start their pools).
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aspects import labels as L  # noqa: E402
from aspects.atlas import LABEL_TABLE_FILE, LABELS_FILE, LEVELS_FILE, TEMPLATE_FILE, region_volumes_ml  # noqa: E402
from aspects.errors import EXIT_PROCESSING, EXIT_USAGE, InputError  # noqa: E402

SEED = 20231
MARGIN_MM = 8

# miplab brain_regions_1mm labels (brain_regions_labels.csv)
REG_CSF = (1, 2, 3, 4) + tuple(range(33, 55))  # ventricles, sulcal CSF, cisterns, extra-brain
REG_R_LAT_VENT = 3
REG_R_INSULA = 9
REG_R_BG = 15
REG_R_THAL = 18  # named "Right_hypothalamus"; 7.4 ml beside the third ventricle: the thalamus
REG_FRONTAL, REG_OCCIPITAL, REG_CEREBELLUM = (5, 6), (13, 14), (20, 21)
# Liu et al. arterial territories (arterial_territories_labels.txt), right side
ART_R = {"LLS": 6, "MCAF": 8, "MCAP": 10, "MCAT": 12, "MCAO": 14, "MCAI": 16}
# Muschelli structure labels (structure_labels.csv)
MUS_CAUDATE = (36, 37)
MUS_LENTIFORM = (55, 56, 57, 58)  # pallidum R/L, putamen R/L

CSF_HU = 12.0  # template voxels darker than this are CSF (template CSF ~0-10 HU, WM ~28 HU)
IC_CLOSING_MM = 6  # bridges the caudate-lentiform-thalamus gaps (IC ~ 5-10 mm wide)


def log(msg: str) -> None:
    print(msg, flush=True)


def read(path: Path, pixel: int) -> sitk.Image:
    if not path.is_file():
        raise InputError(EXIT_USAGE, f"template file missing: {path}")
    return sitk.ReadImage(str(path), pixel)


def centroid_mm(img: sitk.Image, arr: np.ndarray, values: Tuple[int, ...]) -> np.ndarray:
    idx = np.argwhere(np.isin(arr, values)).mean(axis=0)[::-1]  # (x, y, z) index
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def check_orientation(regions: sitk.Image, arr: np.ndarray) -> None:
    """Trust the header only if the anatomy named by the labels agrees with its LPS axes."""
    direction = np.asarray(regions.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise InputError(EXIT_PROCESSING, "template direction is not axis-aligned; cannot build the atlas")
    right = centroid_mm(regions, arr, tuple(range(5, 33, 2)))  # Right_* cortex / WM labels
    left = centroid_mm(regions, arr, tuple(range(6, 33, 2)))
    front = centroid_mm(regions, arr, REG_FRONTAL)
    back = centroid_mm(regions, arr, REG_OCCIPITAL)
    cereb = centroid_mm(regions, arr, REG_CEREBELLUM)
    checks = {
        "Right_* labels at smaller LPS x than Left_*": right[0] < left[0],
        "frontal anterior (smaller LPS y) to occipital": front[1] < back[1],
        "frontal superior (larger LPS z) to cerebellum": front[2] > cereb[2],
    }
    for what, ok in checks.items():
        log(f"  orientation: {what}: {'yes' if ok else 'NO'}")
    if not all(checks.values()):
        raise InputError(EXIT_PROCESSING, "template header orientation disagrees with its anatomy labels")


def midline_index(template_arr: np.ndarray) -> float:
    """Continuous x index of the mid-sagittal plane: the mirror shift that best matches the brain."""
    mask = template_arr > 0
    nx = mask.shape[2]
    best = min(
        range(-6, 7),
        key=lambda s: np.count_nonzero(mask ^ np.roll(mask[:, :, ::-1], s, axis=2)),
    )
    return (nx - 1 + best) / 2.0


def canonical_grid(template: sitk.Image, template_arr: np.ndarray) -> Tuple[sitk.Image, np.ndarray]:
    """Reference grid (1 mm, identity) and the translation (physical, input = output + shift)."""
    c = midline_index(template_arr)
    nz = np.argwhere(template_arr > 0)
    lo, hi = nz.min(axis=0)[::-1].astype(float), nz.max(axis=0)[::-1].astype(float)  # x, y, z index
    corners = np.array(
        [template.TransformContinuousIndexToPhysicalPoint((float(a), float(b), float(d)))
         for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for d in (lo[2], hi[2])]
    )
    pmin, pmax = corners.min(axis=0), corners.max(axis=0)
    mid = template.TransformContinuousIndexToPhysicalPoint((c, float(lo[1]), float(lo[2])))
    shift = np.zeros(3)
    shift[0] = mid[0]
    # y / z: keep voxel alignment (integer mm offsets from the input's voxel centres)
    for axis in (1, 2):
        centre = (pmin[axis] + pmax[axis]) / 2.0
        shift[axis] = mid[axis] + round(centre - mid[axis])
    half_x = np.max(np.abs(corners[:, 0] - shift[0])) + MARGIN_MM
    # midline on a voxel centre -> odd x size, between two voxels -> even size
    odd = abs(c - round(c)) < 0.25
    nx = 2 * int(np.ceil(half_x)) + 1 if odd else 2 * int(np.ceil(half_x + 0.5))
    size = [nx]
    origin = [-(nx - 1) / 2.0]
    for axis in (1, 2):
        a, b = pmin[axis] - shift[axis] - MARGIN_MM, pmax[axis] - shift[axis] + MARGIN_MM
        a, b = np.floor(a), np.ceil(b)
        size.append(int(b - a) + 1)
        origin.append(float(a))
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing((1.0, 1.0, 1.0))
    ref.SetOrigin(origin)
    ref.SetDirection((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    log(f"  mid-sagittal plane at input x index {c:.1f} (LPS x {mid[0]:.1f} mm); "
        f"grid {size} ({'odd' if odd else 'even'} x size), origin {origin}")
    return ref, shift


def to_grid(img: sitk.Image, ref: sitk.Image, shift: np.ndarray, interp: int) -> np.ndarray:
    tx = sitk.TranslationTransform(3, shift.tolist())
    out = sitk.Resample(img, ref, tx, interp, 0.0, img.GetPixelID())
    return sitk.GetArrayFromImage(out)


def wrap(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def symmetric_template(t: np.ndarray) -> np.ndarray:
    mask = (t > 0) & (t[:, :, ::-1] > 0)
    out = 0.5 * (t + t[:, :, ::-1])
    return np.where(mask, out, 0.0).astype(np.float32)


def register_muschelli(templates: Path, template_img: sitk.Image) -> np.ndarray:
    """Muschelli structure labels warped onto the reference grid (antspyx SyN, deterministic)."""
    import ants

    def to_ants(img: sitk.Image) -> "ants.ANTsImage":
        arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32)
        return ants.from_numpy(arr, origin=img.GetOrigin(), spacing=img.GetSpacing(),
                               direction=np.asarray(img.GetDirection()).reshape(3, 3))

    fixed = to_ants(sitk.Cast(template_img, sitk.sitkFloat32))
    mdir = templates / "muschelli_ct"
    moving = to_ants(read(mdir / "brain_template_2mm.nii.gz", sitk.sitkFloat32))
    structures = to_ants(read(mdir / "brain_structures_1mm.nii.gz", sitk.sitkFloat32))
    t0 = time.time()
    reg = ants.registration(fixed, moving, type_of_transform="SyN", random_seed=SEED,
                            aff_random_sampling_rate=1.0, verbose=False)
    log(f"  registration done in {time.time() - t0:.0f} s")
    warped = ants.apply_transforms(fixed, structures, reg["fwdtransforms"], interpolator="genericLabel")
    return np.rint(warped.numpy().transpose(2, 1, 0)).astype(np.int16)


def nearest_split(support: np.ndarray, seeds: List[np.ndarray]) -> np.ndarray:
    """Index (0..len(seeds)-1) of the nearest seed set for each support voxel, -1 elsewhere."""
    dist = np.stack([ndimage.distance_transform_edt(~s) if s.any() else np.full(s.shape, np.inf) for s in seeds])
    out = np.argmin(dist, axis=0).astype(np.int16)
    out[~support] = -1
    return out


def footprint_partition(part: np.ndarray, n: int, sigma_mm: float = 4.0) -> np.ndarray:
    """Axial (y, x) map of which of the n parts of a slab lies below: the most voxels of the
    column after Gaussian smoothing (smooth boundaries), the nearest footprint elsewhere."""
    counts = np.stack([ndimage.gaussian_filter((part == k).sum(axis=0).astype(float), sigma_mm) for k in range(n)])
    nearest = np.argmin(np.stack([ndimage.distance_transform_edt(~(part == k).any(axis=0)) for k in range(n)]), axis=0)
    return np.where(counts.max(axis=0) > 1e-3, np.argmax(counts, axis=0), nearest)


def slab_mask(shape: Tuple[int, int, int], z0: int, z1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[z0 : z1 + 1] = True
    return m


def disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[None, :] ** 2 + r[:, None] ** 2) <= radius**2


def build_right(template: np.ndarray, regions: np.ndarray, arterial: np.ndarray, mus: np.ndarray,
                ) -> Tuple[np.ndarray, Dict[str, Tuple[int, int]], Dict[str, str]]:
    """Label map of the right hemisphere (1..10) and the BG / SG slabs as z index ranges."""
    shape = template.shape
    nx = shape[2]
    right = np.zeros(shape, bool)
    right[:, :, : nx // 2] = True  # x < 0 (the central column of an odd grid is the midline)
    brain = (template > 0) & right
    csf = np.isin(regions, REG_CSF) | (template < CSF_HU)
    tissue = brain & ~csf

    bg = (regions == REG_R_BG) & brain
    split = nearest_split(bg, [np.isin(mus, MUS_CAUDATE) & right, np.isin(mus, MUS_LENTIFORM) & right])
    caudate, lentiform = split == 0, split == 1
    thalamus = (regions == REG_R_THAL) & brain
    insula = (regions == REG_R_INSULA) & brain

    zl = np.nonzero(lentiform.any(axis=(1, 2)))[0]
    zv = np.nonzero(((regions == REG_R_LAT_VENT) & right).any(axis=(1, 2)))[0]
    bg_z = (int(zl.min()), int(zl.max()))
    sg_z = (bg_z[1] + 1, int(zv.max()))
    if sg_z[1] - sg_z[0] < 5:
        raise InputError(EXIT_PROCESSING, f"lateral ventricles end {sg_z[1] - bg_z[1]} mm above the lentiform; cannot set the SG slab")
    bg_slab = slab_mask(shape, *bg_z)
    sg_slab = slab_mask(shape, *sg_z)

    # IC: what an axial closing adds between DIFFERENT nuclei, not the concavities of one nucleus.
    deep = caudate | lentiform | thalamus
    bridge = np.zeros(shape, bool)
    for z in range(bg_z[0], bg_z[1] + 1):
        def close(m: np.ndarray) -> np.ndarray:
            return ndimage.binary_closing(m, structure=disk(IC_CLOSING_MM), border_value=0)
        bridge[z] = close(deep[z]) & ~close(caudate[z]) & ~close(lentiform[z]) & ~close(thalamus[z])
    capsule = bridge & ~deep & ~insula & tissue & bg_slab

    out = np.zeros(shape, np.uint8)
    out[caudate] = L.label_value("right", "C")
    out[lentiform] = L.label_value("right", "L")
    out[capsule] = L.label_value("right", "IC")
    out[insula & (out == 0)] = L.label_value("right", "I")

    mca = np.isin(arterial, tuple(ART_R.values())) & tissue & (out == 0) & ~thalamus
    # BG slab: M1 = MCA frontal; M2 / M3 = MCA temporal in front of / behind the coronal plane at
    # the insula's posterior end (M2 lies lateral to the insula), M3 also takes the parietal and
    # occipital MCA; insular-pars voxels go to the nearest.  Lenticulostriate (deep) voxels stay out.
    y_ins = int(np.nonzero((insula & bg_slab).any(axis=(0, 2)))[0].max())
    posterior = np.zeros(shape, bool)
    posterior[:, y_ins + 1 :, :] = True  # grid y grows towards posterior (LPS)
    temporal = arterial == ART_R["MCAT"]
    seeds = [arterial == ART_R["MCAF"], temporal & ~posterior,
             (temporal & posterior) | np.isin(arterial, (ART_R["MCAP"], ART_R["MCAO"]))]
    bg_part = nearest_split(mca & bg_slab & (arterial != ART_R["LLS"]), [s & tissue & bg_slab for s in seeds])
    # SG slab: M4 / M5 / M6 lie immediately superior to M1 / M2 / M3: each MCA voxel of the slab
    # (lenticulostriate corona radiata included) takes the region whose axial footprint is nearest.
    sg_part = np.where(mca & sg_slab, footprint_partition(bg_part, 3)[None], -1)
    for k, (lo_code, hi_code) in enumerate((("M1", "M4"), ("M2", "M5"), ("M3", "M6"))):
        out[bg_part == k] = L.label_value("right", lo_code)
        out[sg_part == k] = L.label_value("right", hi_code)
    how = {
        "BG": "inferior to superior extent of the lentiform nucleus (putamen + pallidum)",
        "SG": "slice above the lentiform nucleus to the superior extent of the lateral-ventricle bodies",
    }
    return out, {"BG": bg_z, "SG": sg_z}, how


def mirror_to_left(right: np.ndarray) -> np.ndarray:
    """Both hemispheres: the right labels plus their mirror image as left labels (+10)."""
    mirrored = right[:, :, ::-1]
    out = right.copy()
    left = mirrored > 0
    out[left] = mirrored[left] + L.SIDE_OFFSET["left"]
    return out


def write_montage(template: np.ndarray, atlas: np.ndarray, levels_z: Dict[str, Tuple[int, int]],
                  paths: List[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lut = np.zeros((21, 4))
    for v in range(1, 21):
        r, g, b = L.REGION_COLOURS[L.region_of(v).code]
        lut[v] = (r / 255, g / 255, b / 255, 0.55)
    rows = []
    for name in ("BG", "SG"):
        z0, z1 = levels_z[name]
        rows.append([(name, int(round(z0 + f * (z1 - z0)))) for f in (0.2, 0.5, 0.8)])
    fig, axes = plt.subplots(2, 3, figsize=(12, 9.5), facecolor="black")
    for row, ax_row in zip(rows, axes):
        for (name, z), ax in zip(row, ax_row):
            ax.imshow(template[z], cmap="gray", vmin=0, vmax=80, interpolation="nearest")
            ax.imshow(lut[atlas[z]], interpolation="nearest")
            ax.set_title(f"{name} slab, z index {z}", color="white", fontsize=10)
            ax.text(2, template.shape[1] - 4, "R", color="white", fontsize=12)
            ax.text(template.shape[2] - 10, template.shape[1] - 4, "L", color="white", fontsize=12)
            ax.axis("off")
    handles = [Patch(color=np.array(L.REGION_COLOURS[c]) / 255, label=c) for c in L.REGION_CODES]
    fig.legend(handles=handles, loc="lower center", ncol=10, facecolor="black", labelcolor="white", frameon=False)
    fig.suptitle("ASPECTS atlas (axial, radiological view: patient right on image left)", color="white")
    plt.tight_layout(rect=(0, 0.05, 1, 0.97))
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=70, facecolor="black")
    plt.close(fig)


LICENSE_TEXT = """# Licence and sources of the ASPECTS atlas

The files in this folder are derived data, built by `tools/build_atlas.py` from:

- **Digital 3D Brain MRI Arterial Territories Atlas** (MCA frontal / temporal / parietal /
  occipital / insular and lenticulostriate territories), Liu C.-F. et al., "Digital 3D Brain MRI
  Arterial Territories Atlas", Scientific Data 10:74 (2023); (c) 2021 The Johns Hopkins
  University; licence **CC BY-SA 4.0** (https://creativecommons.org/licenses/by-sa/4.0/).
- **CT-TIQUA** (nifm-gin/CT-TIQUA, commit 4138c6e3, folder CT_TIQUA/data): the symmetric NCCT
  template, the resampled arterial atlas and the anatomical region labels (basal ganglia,
  thalamus, insular cortex, ventricles, CSF); licence **Apache-2.0**.
- **High-resolution CT brain template** (muschellij2/high_res_ct_template, commit 135392e7),
  Muschelli J., "A Publicly Available, High Resolution, Unbiased CT Brain Template", IPMU 2020,
  derived from the CQ500 data set; licence **CC BY-NC-SA 4.0** (non-commercial). Its caudate,
  putamen and pallidum labels, registered to the template above, decide where the caudate ends
  and the lentiform nucleus begins.

## Licence of this atlas
`aspects_atlas.nii.gz`, `levels.json` and `montage.png` are adapted material of both the
CC BY-SA 4.0 arterial atlas and the CC BY-NC-SA 4.0 Muschelli labels, so they are distributed
under **CC BY-NC-SA 4.0** (https://creativecommons.org/licenses/by-nc-sa/4.0/): credit the works
above, **non-commercial use only**, share adaptations under the same licence.
`template_ncct_1mm.nii.gz` is the CT-TIQUA template, translated, cropped and made exactly
symmetric: Apache-2.0. `labels.json` is the project's own label table (project licence).
A commercial user must rebuild the atlas without the Muschelli labels.
"""


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", type=Path, required=True, help="folder with miplab_ncct_sym/ and muschelli_ct/")
    ap.add_argument("--out", type=Path, required=True, help="atlas folder to write (e.g. atlas)")
    ap.add_argument("--docs-img", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "img",
                    help="where the montage is copied for the docs (empty string: skip)")
    args = ap.parse_args(argv)
    t_start = time.time()
    try:
        run(args.templates, args.out, args.docs_img)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    log(f"total time {time.time() - t_start:.0f} s")
    return 0


INPUT_FILES = (
    "miplab_ncct_sym/ncct_sym_brain_1mm.nii.gz", "miplab_ncct_sym/brain_regions_1mm.nii.gz",
    "miplab_ncct_sym/arterial_territories_1mm.nii.gz", "muschelli_ct/brain_template_2mm.nii.gz",
    "muschelli_ct/brain_structures_1mm.nii.gz",
)


def run(templates: Path, out: Path, docs_img: Path | None) -> None:
    missing = [name for name in INPUT_FILES if not (templates / name).is_file()]
    if missing:
        raise InputError(EXIT_USAGE, f"--templates {templates}: missing {', '.join(missing)}")
    mdir = templates / "miplab_ncct_sym"
    log(f"[1/6] reading {mdir}")
    template = read(mdir / "ncct_sym_brain_1mm.nii.gz", sitk.sitkFloat32)
    regions = read(mdir / "brain_regions_1mm.nii.gz", sitk.sitkFloat32)
    arterial = read(mdir / "arterial_territories_1mm.nii.gz", sitk.sitkInt16)
    regions_arr = np.rint(sitk.GetArrayFromImage(regions)).astype(np.int16)
    check_orientation(regions, regions_arr)

    log("[2/6] reference grid")
    ref, shift = canonical_grid(template, sitk.GetArrayFromImage(template))
    t_arr = symmetric_template(to_grid(template, ref, shift, sitk.sitkLinear))
    reg_arr = np.rint(to_grid(regions, ref, shift, sitk.sitkNearestNeighbor)).astype(np.int16)
    art_arr = to_grid(arterial, ref, shift, sitk.sitkNearestNeighbor).astype(np.int16)
    template_img = wrap(t_arr, ref)

    log("[3/6] registering the Muschelli CT template (caudate / lentiform labels)")
    mus = register_muschelli(templates, template_img)

    log("[4/6] regions (right hemisphere, mirrored to the left)")
    right, slabs, how = build_right(t_arr, reg_arr, art_arr, mus)
    atlas = mirror_to_left(right)
    atlas_img = wrap(atlas.astype(np.uint8), ref)

    log(f"[5/6] writing {out}")
    out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(template_img, str(out / TEMPLATE_FILE), useCompression=True)
    sitk.WriteImage(atlas_img, str(out / LABELS_FILE), useCompression=True)
    (out / LABEL_TABLE_FILE).write_text(json.dumps(L.label_table(), indent=1) + "\n")
    z_origin = ref.GetOrigin()[2]
    levels = {
        name: {
            "z_min_mm": z_origin + z0, "z_max_mm": z_origin + z1, "z_min_index": z0, "z_max_index": z1,
            "derivation": how[name],
        }
        for name, (z0, z1) in slabs.items()
    }
    levels["note"] = "physical LPS z in mm (superior +), inclusive, on the grid of aspects_atlas.nii.gz"
    (out / LEVELS_FILE).write_text(json.dumps(levels, indent=1) + "\n")
    (out / "LICENSE.md").write_text(LICENSE_TEXT)

    log("[6/6] montage")
    pngs = [out / "montage.png"] + ([docs_img / "atlas_montage.png"] if docs_img and str(docs_img) else [])
    write_montage(t_arr, atlas, slabs, pngs)

    vols = region_volumes_ml(atlas_img)
    log(f"  BG slab z {levels['BG']['z_min_mm']:.0f}..{levels['BG']['z_max_mm']:.0f} mm, "
        f"SG slab z {levels['SG']['z_min_mm']:.0f}..{levels['SG']['z_max_mm']:.0f} mm")
    log("  region   right ml   left ml")
    for code in L.REGION_CODES:
        r, lft = vols[L.label_value("right", code)], vols[L.label_value("left", code)]
        log(f"  {code:<6} {r:9.2f} {lft:9.2f}")


if __name__ == "__main__":
    sys.exit(main())
