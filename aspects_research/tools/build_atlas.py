#!/usr/bin/env python
"""Build the ASPECTS atlas v2 from public templates (licences in atlas/LICENSE.md).

    aspects-build-atlas --real ../shared/data/real --out atlas        # ~5 min on 2 cores

Inputs: the scct CT template (Rorden et al. 2012), the arterial territory atlas of Liu et al.
2023 (registered onto it), and with ``--compare`` the OpenADS ASPECTS atlas for a comparison only.
The derivation, step by step, with figures: docs/atlas.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

# Deterministic registration: one ITK thread (set before antspyx/SimpleITK start their pools).
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from aspects import labels as L  # noqa: E402
from aspects.atlas import (ARTERIAL_RIGHT, LABEL_TABLE_FILE, LABELS_FILE, LEVELS_FILE, TEMPLATE_FILE,  # noqa: E402
                           TERRITORIES_FILE, TERRITORY_GROUPS, region_volumes_ml)
from aspects.errors import EXIT_PROCESSING, EXIT_USAGE, InputError  # noqa: E402

SEED = 20231
MARGIN_MM = 8
ROOT = Path(__file__).resolve().parents[2]

ART_R = ARTERIAL_RIGHT  # Liu et al. 2023 level-1 labels, right side (left = right - 1)
ART_LV = (31, 32)
# OpenADS ASPECTS atlas labels (AspectsLabelLookupTable.txt): value -> (side, code).
OPENADS = {1: ("left", "C"), 2: ("right", "C"), 3: ("left", "L"), 4: ("right", "L"), 5: ("left", "IC"),
           6: ("right", "IC"), 7: ("left", "I"), 8: ("right", "I"), 9: ("left", "M1"), 10: ("right", "M1"),
           11: ("left", "M2"), 12: ("right", "M2"), 13: ("left", "M3"), 14: ("right", "M3"), 15: ("left", "M6"),
           16: ("right", "M6"), 17: ("left", "M5"), 18: ("right", "M5"), 19: ("left", "M4"), 20: ("right", "M4")}

WM_TARGET_HU = 28.0  # adult NCCT white matter (../shared/docs/aspects.md: 20-30 HU)
BRAIN_RAW_HU = -20.0  # the stripped template's smooth edge: brain where above this (raw HU)
CAUDATE_BAND_MM = 5.0  # caudate head/body: the tissue on the ventricle's lateral wall
INSULA_GAP_MM = 4.0  # external capsule + claustrum + extreme capsule between putamen and insular cortex
IC_CLOSING_MM = 6  # bridges the caudate-lentiform-thalamus gaps (IC ~ 5-10 mm wide)
# M regions are cortex with its subjacent white matter: MCA territory within this depth of the
# brain surface (the published 3D atlas's M regions: 95th percentile of depth 19-27 mm); deeper
# white matter (centrum semiovale, corona radiata) belongs to no M region.
M_DEPTH_MM = 22.0
# The SG level is read ~2 cm above the BG level (../shared/docs/aspects.md): the SG slab spans the
# lateral-ventricle bodies and at least this far above the top of the lentiform nucleus.
SG_MIN_MM = 18


def log(msg: str) -> None:
    print(msg, flush=True)


def read(path: Path, pixel: int) -> sitk.Image:
    if not path.is_file():
        raise InputError(EXIT_USAGE, f"input file missing: {path}")
    return sitk.ReadImage(str(path), pixel)


def wrap(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def midline_x_mm(img: sitk.Image) -> float:
    """Physical x (LPS) of the mid-sagittal plane: the mirror shift that best matches the brain."""
    arr = sitk.GetArrayFromImage(img) > BRAIN_RAW_HU
    nx = arr.shape[2]
    best = min(range(-6, 7), key=lambda s: np.count_nonzero(arr ^ np.roll(arr[:, :, ::-1], s, axis=2)))
    centre = (nx - 1 + best) / 2.0
    return float(img.TransformContinuousIndexToPhysicalPoint((centre, 0.0, 0.0))[0])


def reference_grid(img: sitk.Image) -> sitk.Image:
    """1 mm identity LPS grid, x symmetric about the mid-sagittal plane (moved to x = 0), odd x
    size, y / z the brain's bounding box + MARGIN_MM."""
    x0 = midline_x_mm(img)
    arr = sitk.GetArrayFromImage(img) > BRAIN_RAW_HU
    idx = np.argwhere(arr)
    pts = np.array([img.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]])
                    for p in (idx.min(axis=0), idx.max(axis=0))])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    half = int(np.ceil(max(abs(lo[0] - x0), abs(hi[0] - x0)) + MARGIN_MM))
    size = [2 * half + 1]
    origin = [-float(half)]
    for axis in (1, 2):
        a, b = np.floor(lo[axis] - MARGIN_MM), np.ceil(hi[axis] + MARGIN_MM)
        size.append(int(b - a) + 1)
        origin.append(float(a))
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((1.0, 1.0, 1.0))
    ref.SetOrigin(origin)
    ref.SetDirection((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    log(f"  mid-sagittal plane at LPS x {x0:.1f} mm -> 0; grid {size}, origin {origin}")
    ref.SetMetaData("x_shift", str(x0))
    return ref


def on_grid(img: sitk.Image, ref: sitk.Image, x_shift: float, interp: int, default: float) -> np.ndarray:
    tx = sitk.TranslationTransform(3, (x_shift, 0.0, 0.0))
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, tx, interp, default, sitk.sitkFloat32))


def symmetric(arr: np.ndarray) -> np.ndarray:
    return 0.5 * (arr + arr[:, :, ::-1])


def right_half(shape: Tuple[int, int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[:, :, : shape[2] // 2] = True  # x < 0 (the central column of the odd grid is the midline)
    return m


def mirror_to_left(right: np.ndarray, offset: int) -> np.ndarray:
    """Both hemispheres: the right labels plus their mirror image, relabelled by ``offset``."""
    mirrored = right[:, :, ::-1]
    out = right.copy()
    left = mirrored > 0
    out[left] = (mirrored[left].astype(np.int16) + offset).astype(out.dtype)
    return out


def calibrate(raw: np.ndarray, z_mm: np.ndarray) -> Tuple[np.ndarray, float]:
    """Template in HU with white matter at WM_TARGET_HU: the offset that moves the median of the
    centrum semiovale (brain > 12 mm inside the surface, 25-40 mm above the AC plane, not CSF)."""
    brain = ndimage.binary_fill_holes(raw > BRAIN_RAW_HU)
    deep = ndimage.distance_transform_edt(brain) > 12
    band = (z_mm >= 25) & (z_mm <= 40)
    sel = deep & band[:, None, None] & (raw > 10)
    offset = WM_TARGET_HU - float(np.median(raw[sel]))
    out = np.where(brain, np.clip(raw + offset, 0.0, None), 0.0).astype(np.float32)
    return out, offset


def register_arterial(template: np.ndarray, ref: sitk.Image, arterial: sitk.Image,
                      others: List[sitk.Image]) -> List[np.ndarray]:
    """Level-1 arterial labels (and ``others`` on the same JHU grid) carried onto the template by
    SyN of a pseudo-CT of the atlas (parenchyma 28 HU, lateral ventricles 5 HU)."""
    import ants

    a = sitk.GetArrayFromImage(arterial)
    pseudo = np.where(a > 0, 28.0, 0.0)
    pseudo[np.isin(a, ART_LV)] = 5.0
    moving = ants.from_sitk(wrap(pseudo.astype(np.float32), arterial))
    fixed = ants.from_sitk(wrap(np.clip(template, 0.0, 40.0).astype(np.float32), ref))
    # Registered at 2 mm (the scct template's own resolution): the 1 mm grid adds no detail to
    # match and costs 8x the time; the labels are then resampled at 1 mm through the same field.
    fixed2, moving2 = (ants.resample_image(im, (2.0, 2.0, 2.0), use_voxels=False, interp_type=0) for im in (fixed, moving))
    t0 = time.time()
    reg = ants.registration(fixed2, moving2, type_of_transform="SyN", random_seed=SEED, aff_random_sampling_rate=1.0,
                            syn_metric="mattes", reg_iterations=(60, 30, 0), verbose=False)
    log(f"  SyN done in {time.time() - t0:.0f} s")
    out = []
    for img in [arterial] + others:
        w = ants.apply_transforms(fixed, ants.from_sitk(sitk.Cast(img, sitk.sitkFloat32)), reg["fwdtransforms"],
                                  interpolator="genericLabel")
        out.append(np.rint(w.numpy().transpose(2, 1, 0)).astype(np.int16))
    return out


def otsu(values: np.ndarray) -> float:
    """Otsu's (1979) threshold of a 1-D sample (256-bin histogram)."""
    h, e = np.histogram(values, bins=256)
    c = (e[:-1] + e[1:]) / 2
    w = np.cumsum(h)
    m = np.cumsum(h * c)
    between = (m[-1] * w - m * w[-1]) ** 2 / np.maximum(w * (w[-1] - w), 1e-9)
    return float(c[np.argmax(between)])


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
    m[z0: z1 + 1] = True
    return m


def disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[None, :] ** 2 + r[:, None] ** 2) <= radius**2


def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def deep_anatomy(t: np.ndarray, art: np.ndarray, right: np.ndarray, x_mm: np.ndarray) -> Dict[str, np.ndarray]:
    """Ventricle, thalamus, caudate, lentiform nucleus and CSF of the right hemisphere."""
    ts = ndimage.gaussian_filter(t, 1.0)
    lv_core = ndimage.binary_erosion(art == ART_R["LV"], iterations=2) & right
    csf_ref = float(np.median(ts[lv_core])) if lv_core.any() else 5.0
    csf_cut = 0.5 * (csf_ref + WM_TARGET_HU)
    csf = ts < csf_cut
    ventricle = csf & ndimage.binary_dilation(art == ART_R["LV"], iterations=3) & right
    ventricle = largest_component(ventricle)
    tissue = (t > 0) & ~csf
    zone = ndimage.binary_dilation(np.isin(art, (ART_R["LLS"], ART_R["MLS"], ART_R["ACTP"], ART_R["PCTP"])),
                                   iterations=3) & right & tissue
    gm_cut = otsu(ts[zone])
    grey = zone & (ts >= gm_cut)
    striatal = np.isin(art, (ART_R["LLS"], ART_R["MLS"]))
    split = nearest_split(grey, [striatal, art == ART_R["PCTP"]])
    thalamus = largest_component((split == 1) & np.isin(art, (ART_R["PCTP"], ART_R["ACTP"])))
    # Caudate: tissue on the LATERAL wall of the lateral ventricle (its nearest ventricle voxel is
    # medial to it), inside the striatal territories; the thalamus, under the body, is excluded.
    dist, (iz, iy, ix) = ndimage.distance_transform_edt(~ventricle, return_indices=True)
    lateral_wall = np.abs(x_mm)[None, None, :] > np.abs(x_mm)[ix]
    caudate = (dist <= CAUDATE_BAND_MM) & lateral_wall & tissue & right & ~thalamus
    caudate &= ndimage.binary_dilation(striatal, iterations=2)
    caudate = largest_component(caudate)
    # Lentiform: the grey of the striatal territories away from the caudate; the pallidum, darker
    # than the putamen on CT, is the hole inside the putamen's ring in each axial slice (closed
    # by 3 mm and filled).
    lentiform = (split == 0) & ndimage.binary_dilation(striatal, iterations=1) & ~ndimage.binary_dilation(caudate, iterations=2)
    filled = np.stack([ndimage.binary_fill_holes(ndimage.binary_closing(sl, structure=disk(3)) | sl) for sl in lentiform])
    lentiform = largest_component(filled & ndimage.binary_dilation(striatal, iterations=1) & ~caudate & tissue)
    log(f"  thresholds: CSF < {csf_cut:.1f} HU (ventricle median {csf_ref:.1f}), deep grey >= {gm_cut:.1f} HU (Otsu)")
    return {"csf": csf, "tissue": tissue, "ventricle": ventricle, "thalamus": thalamus, "caudate": caudate,
            "lentiform": lentiform, "grey": ts >= gm_cut}


def build_right(t: np.ndarray, art: np.ndarray, x_mm: np.ndarray,
                ) -> Tuple[np.ndarray, Dict[str, Tuple[int, int]], Dict[str, str], np.ndarray]:
    """Label map of the right hemisphere (1..10), the BG / SG slabs (z index ranges), their
    derivations and the thalamus mask."""
    shape = t.shape
    right = right_half(shape)
    d = deep_anatomy(t, art, right, x_mm)
    tissue, caudate, lentiform, thalamus = d["tissue"] & right, d["caudate"], d["lentiform"], d["thalamus"]

    zl = np.nonzero(lentiform.any(axis=(1, 2)))[0]
    zv = np.nonzero(d["ventricle"].any(axis=(1, 2)))[0]
    bg_z = (int(zl.min()), int(zl.max()))
    sg_z = (bg_z[1] + 1, max(int(zv.max()), bg_z[1] + SG_MIN_MM))
    if sg_z[1] - sg_z[0] < 5:
        raise InputError(EXIT_PROCESSING, f"lateral ventricles end {sg_z[1] - bg_z[1]} mm above the lentiform; cannot set the SG slab")
    bg_slab, sg_slab = slab_mask(shape, *bg_z), slab_mask(shape, *sg_z)

    # IC: what an axial closing adds between DIFFERENT nuclei, not the concavities of one nucleus.
    deep = caudate | lentiform | thalamus
    bridge = np.zeros(shape, bool)

    def close(m: np.ndarray) -> np.ndarray:
        return ndimage.binary_closing(m, structure=disk(IC_CLOSING_MM), border_value=0)

    for z in range(bg_z[0], bg_z[1] + 1):
        bridge[z] = close(deep[z]) & ~close(caudate[z]) & ~close(lentiform[z]) & ~close(thalamus[z])
    capsule = bridge & ~deep & tissue & bg_slab

    # Insula: the grey ribbon of the insular MCA territory more than INSULA_GAP_MM lateral to the
    # lentiform nucleus (the external capsule, claustrum and extreme capsule stay out).
    away = ndimage.distance_transform_edt(~lentiform) > INSULA_GAP_MM
    lateral = x_mm[None, None, :] < np.where(lentiform.any(axis=2), x_mm[np.argmax(lentiform, axis=2)], 0.0)[:, :, None]
    insula = (art == ART_R["MCAI"]) & tissue & d["grey"] & away & lateral & ~deep & ~capsule

    out = np.zeros(shape, np.uint8)
    out[caudate] = L.label_value("right", "C")
    out[lentiform] = L.label_value("right", "L")
    out[capsule] = L.label_value("right", "IC")
    out[insula & (out == 0)] = L.label_value("right", "I")

    # The MCA's occipital pars (lateral occipital cortex) is outside ASPECTS: M3 is the posterior
    # temporal and M6 the posterior parietal cortex.
    mca_codes = (ART_R["LLS"], ART_R["MCAF"], ART_R["MCAP"], ART_R["MCAT"], ART_R["MCAI"])
    depth = ndimage.distance_transform_edt(ndimage.binary_fill_holes(t > 0))
    mca = np.isin(art, mca_codes) & tissue & (out == 0) & ~thalamus & (depth <= M_DEPTH_MM)
    # BG slab: M1 = MCA frontal; M2 / M3 = MCA temporal in front of / behind the coronal plane at
    # the insula's posterior end (M2 lies lateral to the insula), M3 also the parietal and
    # occipital pars; insular-pars voxels go to the nearest. Lenticulostriate (deep) voxels stay out.
    y_ins = int(np.nonzero((insula & bg_slab).any(axis=(0, 2)))[0].max())
    posterior = np.zeros(shape, bool)
    posterior[:, y_ins + 1:, :] = True  # grid y grows towards posterior (LPS)
    temporal = art == ART_R["MCAT"]
    seeds = [art == ART_R["MCAF"], temporal & ~posterior,
             (temporal & posterior) | (art == ART_R["MCAP"])]
    bg_part = nearest_split(mca & bg_slab & (art != ART_R["LLS"]), [s & tissue & bg_slab for s in seeds])
    # SG slab: M4 / M5 / M6 lie immediately superior to M1 / M2 / M3: each MCA voxel of the slab
    # (lenticulostriate corona radiata included) takes the region whose axial footprint is nearest.
    sg_part = np.where(mca & sg_slab, footprint_partition(bg_part, 3)[None], -1)
    for k, (lo_code, hi_code) in enumerate((("M1", "M4"), ("M2", "M5"), ("M3", "M6"))):
        out[bg_part == k] = L.label_value("right", lo_code)
        out[sg_part == k] = L.label_value("right", hi_code)
    how = {
        "BG": "inferior to superior extent of the lentiform nucleus (putamen + pallidum)",
        "SG": f"slice above the lentiform nucleus to the superior extent of the lateral-ventricle bodies, at least "
              f"{SG_MIN_MM} mm above the lentiform's top (the SG level is read ~2 cm above the BG level)",
    }
    return out, {"BG": bg_z, "SG": sg_z}, how, thalamus


def territories_symmetric(art: np.ndarray) -> np.ndarray:
    """Level-1 territories: the right hemisphere's (even labels, ventricles dropped) mirrored to
    the left (label - 1)."""
    right = np.where(right_half(art.shape) & (art % 2 == 0) & (art > 0) & ~np.isin(art, ART_LV), art, 0)
    return mirror_to_left(right.astype(np.uint8), -1)


def _lut() -> np.ndarray:
    lut = np.zeros((21, 4))
    for v in range(1, 21):
        r, g, b = L.REGION_COLOURS[L.region_of(v).code]
        lut[v] = (r / 255, g / 255, b / 255, 0.6)
    return lut


def write_montage(template: np.ndarray, atlases: List[Tuple[str, np.ndarray]], levels_z: Dict[str, Tuple[int, int]],
                  paths: List[Path], title: str) -> None:
    """Axial slices through both slabs (rows) and a sagittal view through the right hemisphere,
    one column block per atlas (radiological view: patient right on image left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lut = _lut()
    slices = []
    for name in ("BG", "SG"):
        z0, z1 = levels_z[name]
        slices += [(name, int(round(z0 + f * (z1 - z0)))) for f in (0.3, 0.7)]
    x_sag = template.shape[2] // 2 - 38  # 38 mm right of the midline: insula / M2 / M5
    ncol = len(atlases)
    fig, axes = plt.subplots(len(slices) + 1, ncol, figsize=(4.2 * ncol, 4.0 * (len(slices) + 1)), facecolor="black",
                             squeeze=False)
    for c, (label, atlas) in enumerate(atlases):
        for r, (name, z) in enumerate(slices):
            ax = axes[r, c]
            ax.imshow(template[z], cmap="gray", vmin=0, vmax=60, interpolation="nearest")
            ax.imshow(lut[atlas[z]], interpolation="nearest")
            ax.set_title(f"{label}: {name} slab, z index {z}", color="white", fontsize=9)
            ax.text(2, template.shape[1] - 4, "R", color="white", fontsize=10)
            ax.axis("off")
        ax = axes[-1, c]
        ax.imshow(template[::-1, :, x_sag], cmap="gray", vmin=0, vmax=60, interpolation="nearest")
        ax.imshow(lut[atlas[::-1, :, x_sag]], interpolation="nearest")
        ax.set_title(f"{label}: sagittal, 38 mm right (anterior left)", color="white", fontsize=9)
        ax.axis("off")
    handles = [Patch(color=np.array(L.REGION_COLOURS[c]) / 255, label=c) for c in L.REGION_CODES]
    fig.legend(handles=handles, loc="lower center", ncol=10, facecolor="black", labelcolor="white", frameon=False)
    fig.suptitle(title, color="white")
    plt.tight_layout(rect=(0, 0.03, 1, 0.97))
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=60, facecolor="black")
    plt.close(fig)


def openads_on_grid(asp: np.ndarray) -> np.ndarray:
    """The OpenADS ASPECTS labels (warped onto our grid) in the project's label values."""
    out = np.zeros(asp.shape, np.uint8)
    for v, (side, code) in OPENADS.items():
        out[asp == v] = L.label_value(side, code)
    return out


def compare(ours: np.ndarray, theirs: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Per region (both sides pooled) Dice and volumes (ml per hemisphere, mean of both sides)."""
    rows = {}
    for code in L.REGION_CODES:
        a = np.isin(ours, [L.label_value(s, code) for s in L.SIDES])
        b = np.isin(theirs, [L.label_value(s, code) for s in L.SIDES])
        rows[code] = {"dice": round(2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum())), 3),
                      "ours_ml": round(float(a.sum()) / 2000.0, 2), "openads_ml": round(float(b.sum()) / 2000.0, 2)}
    a, b = ours > 0, theirs > 0
    rows["all 20"] = {"dice": round(float(np.mean([2.0 * float(((ours == v) & (theirs == v)).sum())
                                                    / max(1, int((ours == v).sum() + (theirs == v).sum()))
                                                    for v in range(1, 21)])), 3),
                      "ours_ml": round(float(a.sum()) / 1000.0, 1), "openads_ml": round(float(b.sum()) / 1000.0, 1)}
    return rows


LICENSE_TEXT = """# Licence and sources of the ASPECTS atlas (v2)

The files in this folder are derived data, built by `aspects-build-atlas` from exactly two inputs:

| input | what is used | licence | terms the project relies on |
| --- | --- | --- | --- |
| **scct CT template**, Rorden C, Bonilha L, Fridriksson J, Bender B, Karnath HO, "Age-specific CT and MRI templates for spatial normalization", NeuroImage 61:957-965 (2012); SPM Clinical toolbox, GitHub neurolabusc/Clinical commit 1b6bc35, `scct_stripped.nii` (HU conversion of `clinical_c2h.m`) | the brain-extracted template image: resampled to 1 mm, made symmetric, offset in HU; the grey / white / CSF intensities from which the deep nuclei, the internal capsule and the insular ribbon are drawn | **BSD-2-Clause** (c) 2021 Chris Rorden | redistribution in source and binary form, with or without modification, for any purpose including commercial, provided the copyright notice, the two conditions and the disclaimer are reproduced (below) |
| **Digital 3D Brain MRI Arterial Territories Atlas**, Liu C-F, Hsu J, Xu X, et al., Scientific Data 10:74 (2023), doi:10.1038/s41597-022-01923-0; (c) 2021 The Johns Hopkins University; file `ArterialAtlas_MNI182.nii.gz` as distributed with OpenADS (farialab/OpenADS commit e08338e) | level-1 territory labels, registered to the template: the MCA territory that bounds every cortical region and splits M1 / M2 / M3, the deep territories that locate the nuclei, and `territories.nii.gz` | **CC BY-SA 4.0** (https://creativecommons.org/licenses/by-sa/4.0/) | share and adapt for any purpose, including commercial, with attribution (this notice), indication of changes (registered to the scct template, right hemisphere mirrored, regions derived) and adapted material under the same licence (ShareAlike) |

Not used for anything that ships: the OpenADS 3D ASPECTS atlas (licence statements conflict:
MIT in its LICENSE file, GPL-3 in its README) is only compared against, in `docs/atlas.md`;
the CC BY-NC-SA 4.0 Muschelli template and the CT-TIQUA / MIPLAB data of atlas v1 (whose README
says "not available for commercial purposes") are not inputs of v2.

## Licence of each file
- `aspects_atlas.nii.gz`, `territories.nii.gz`, `levels.json`, `montage.png`: adapted material of
  the arterial territories atlas, so **CC BY-SA 4.0**: credit Liu et al. 2023 and Johns Hopkins
  University as above, say that they were changed, and share adaptations of these files under
  CC BY-SA 4.0. ShareAlike applies to these atlas files and their adaptations, not to the software
  that reads them (the app loads them as separate data files). Commercial use is allowed.
- `template_ncct_1mm.nii.gz`: the scct template, modified: **BSD-2-Clause**, notice below.
- `labels.json`: the project's own label table (project licence).

## BSD-2-Clause notice of the scct template
Copyright (c) 2021, Chris Rorden. All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are permitted
provided that the following conditions are met:
1. Redistributions of source code must retain the above copyright notice, this list of conditions
   and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list of
   conditions and the following disclaimer in the documentation and/or other materials provided
   with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF
THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

INPUT_FILES = ("scct_mni/scct_stripped_HU.nii.gz", "openads_mni/ArterialAtlas_MNI182.nii.gz")
COMPARE_FILE = "openads_mni/AspectsAtlas_MNI182.nii.gz"


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, required=True, help="folder with scct_mni/ and openads_mni/ (../shared/data/real)")
    ap.add_argument("--out", type=Path, required=True, help="atlas folder to write (e.g. atlas)")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs",
                    help="where montages and the OpenADS comparison go (empty string: skip)")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison with the OpenADS atlas")
    ap.add_argument("--warp-cache", type=Path, help="npz of the registered atlases: read when it exists, else "
                                                     "written (re-running the later steps without the registration)")
    args = ap.parse_args(argv)
    t_start = time.time()
    try:
        run(args.real, args.out, Path(args.docs) if str(args.docs) else None, not args.no_compare, args.warp_cache)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    log(f"total time {time.time() - t_start:.0f} s")
    return 0


def run(real: Path, out: Path, docs: Optional[Path], do_compare: bool, warp_cache: Optional[Path] = None) -> None:
    needed = INPUT_FILES + ((COMPARE_FILE,) if do_compare else ())
    missing = [name for name in needed if not (real / name).is_file()]
    if missing:
        raise InputError(EXIT_USAGE, f"--real {real}: missing {', '.join(missing)}")
    log(f"[1/7] reading {real}")
    scct = read(real / INPUT_FILES[0], sitk.sitkFloat32)
    arterial = read(real / INPUT_FILES[1], sitk.sitkFloat32)
    others = [read(real / COMPARE_FILE, sitk.sitkFloat32)] if do_compare else []

    log("[2/7] reference grid, symmetric template, HU calibration")
    ref = reference_grid(scct)
    x0 = float(ref.GetMetaData("x_shift"))
    raw = symmetric(on_grid(scct, ref, x0, sitk.sitkLinear, -1024.0))
    z_mm = ref.GetOrigin()[2] + np.arange(raw.shape[0])
    x_mm = ref.GetOrigin()[0] + np.arange(raw.shape[2])
    template_full, offset = calibrate(raw, z_mm)
    template_full = symmetric(template_full).astype(np.float32)
    # Stored and used in 0.01 HU steps (far below CT noise); the registration sees full precision.
    template = np.round(template_full, 2).astype(np.float32)
    log(f"  HU offset {offset:+.1f} (white matter -> {WM_TARGET_HU:.0f} HU); brain {np.count_nonzero(template) / 1000:.0f} ml")

    log("[3/7] registering the arterial atlas (pseudo-CT) to the template")
    if warp_cache and warp_cache.is_file():
        warped = list(np.load(warp_cache)["warped"])
        log(f"  read from {warp_cache}")
    else:
        warped = register_arterial(template_full, ref, arterial, others)
        if warp_cache:
            np.savez_compressed(warp_cache, warped=np.stack(warped))
    art = warped[0]

    log("[4/7] regions (right hemisphere, mirrored to the left)")
    right, slabs, how, _ = build_right(template, art, x_mm)
    atlas = mirror_to_left(right, L.SIDE_OFFSET["left"])
    territories = territories_symmetric(art)

    log(f"[5/7] writing {out}")
    out.mkdir(parents=True, exist_ok=True)
    template_img = wrap(template, ref)
    atlas_img = wrap(atlas.astype(np.uint8), ref)
    for img, name in ((template_img, TEMPLATE_FILE), (atlas_img, LABELS_FILE), (wrap(territories, ref), TERRITORIES_FILE)):
        sitk.WriteImage(img, str(out / name), useCompression=True)
    (out / LABEL_TABLE_FILE).write_text(json.dumps(L.label_table(), indent=1) + "\n")
    z_origin = ref.GetOrigin()[2]
    levels = {
        name: {"z_min_mm": z_origin + z0, "z_max_mm": z_origin + z1, "z_min_index": z0, "z_max_index": z1,
               "derivation": how[name]}
        for name, (z0, z1) in slabs.items()
    }
    levels["note"] = "physical LPS z in mm (superior +), inclusive, on the grid of aspects_atlas.nii.gz (MNI z of the scct template)"
    (out / LEVELS_FILE).write_text(json.dumps(levels, indent=1) + "\n")
    (out / "LICENSE.md").write_text(LICENSE_TEXT)

    log("[6/7] montage")
    img_dir = docs / "img" if docs else None
    write_montage(template, [("atlas v2", atlas)], slabs,
                  [out / "montage.png"] + ([img_dir / "atlas_montage.png"] if img_dir else []),
                  "ASPECTS atlas v2 on the symmetric scct template (axial: patient right on image left)")
    vols = region_volumes_ml(atlas_img)
    log(f"  BG slab z {levels['BG']['z_min_mm']:.0f}..{levels['BG']['z_max_mm']:.0f} mm, "
        f"SG slab z {levels['SG']['z_min_mm']:.0f}..{levels['SG']['z_max_mm']:.0f} mm")
    log("  region   right ml   left ml")
    for code in L.REGION_CODES:
        r, lft = vols[L.label_value("right", code)], vols[L.label_value("left", code)]
        log(f"  {code:<6} {r:9.2f} {lft:9.2f}")
    groups = {g: float(np.isin(territories, v).sum()) / 1000.0 for g, v in TERRITORY_GROUPS.items()}
    log("  territories (ml, both sides): " + ", ".join(f"{g} {v:.0f}" for g, v in groups.items()))

    if do_compare and docs:
        log("[7/7] comparison with the OpenADS 3D ASPECTS atlas (same warp)")
        theirs = openads_on_grid(warped[1])
        rows = compare(atlas, theirs)
        (docs / "atlas_compare.json").write_text(json.dumps(
            {"inputs": "OpenADS AspectsAtlas_MNI182 carried onto the v2 template by the arterial atlas's SyN "
                       "(both on the JHU MNI grid)", "regions": rows}, indent=1) + "\n")
        for code, row in rows.items():
            log(f"  {code:<6} Dice {row['dice']:.2f}  ours {row['ours_ml']:6.1f} ml  OpenADS {row['openads_ml']:6.1f} ml")
        write_montage(template, [("atlas v2 (this project)", atlas), ("OpenADS (registered)", theirs)], slabs,
                      [img_dir / "atlas_vs_openads.png"],
                      "Atlas v2 beside OpenADS (Liu et al. 2023) on the v2 template")


if __name__ == "__main__":
    sys.exit(main())
