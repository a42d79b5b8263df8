"""Head anatomy sources of the synthetic studies (generator v2; docs/data.md "Anatomy sources").

Every source becomes an :class:`aspects_research.phantoms.Anatomy` on the same 1 mm crop of the atlas
template's space (LPS, the template's MNI grid with x and y negated), so lesions, regions and
territories of the atlas apply to all of them:

- ``template``: the symmetric atlas template with a synthetic skull (generator v1's head), plus
  synthetic calcifications;
- ``scct``: the scct CT template WITH its skull (Rorden et al. 2012, BSD-2): real bone shape and
  brain-edge partial volume at 2 mm, not made symmetric; plus synthetic calcifications;
- ``ge``: the real GE head CT of the shared data (BSD-2; gantry tilt removed as the app does);
- ``invesalius``: the real InVesalius example head CT (**GPL-2: validation and test studies only,
  never training data of a shipped model**; :data:`TRAIN_ANATOMIES` leaves it out).

A real head is placed by the app's own affine registration (``aspects.preprocess``) and keeps
its shape; the atlas labels, territories and lesion masks reach it through a deformable SyN
registration (Avants et al. 2008) of the template onto it, stored as a displacement field. Its
native noise is reduced by a light in-plane smoothing (the generator adds scanner-like noise of
the requested level), and the unannotated hypodensity each real head carries (data README) is
replaced by the mirrored contralateral tissue (:func:`repair_mask`); a low-frequency hemispheric
deficit no finding explains (the GE head's darker left MCA cortex) is filled from the other side
(:func:`hemispheric_balance`), so a study built on it is normal unless a lesion is painted. Real heads keep their own calcifications; the templates get
synthetic ones (:func:`paint_calcifications`). Real-head registrations take about a minute and
are cached in ``build/phantom_anatomy/`` (ANTs on one thread with a fixed seed: the same result
on the same machine).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.errors import EXIT_USAGE, InputError
from aspects_research.phantom_lesions import default_real_data

ANATOMIES: Tuple[str, ...] = ("template", "scct", "ge", "invesalius")
TRAIN_ANATOMIES: Tuple[str, ...] = ("template", "scct", "ge")
# Brain volume of each source at scale 1 as the app measures it (aspects.json qc.brain_volume_ml
# over the head's scale cubed; median of the 30-37 studies per source of the three v2 test-recipe
# draws, session 40; each within 3 % of it). The real heads are placed at the template's size by the
# app's affine; the scct template is MNI-sized, 22 % more. phantoms.adult_scale divides by these.
SOURCE_BRAIN_ML: Dict[str, float] = {"template": 1504.0, "scct": 1838.0, "ge": 1509.0, "invesalius": 1533.0}
LICENCES: Dict[str, str] = {
    "template": "BSD-2-Clause (scct template) / CC BY-SA 4.0 (atlas labels)",
    "scct": "BSD-2-Clause (Rorden et al. 2012, neurolabusc/Clinical)",
    "ge": "BSD-2-Clause (neurolabusc/dcm_qa_ct, Aliza Medical Imaging sample)",
    "invesalius": "GPL-2 (InVesalius example, Debian invesalius-examples): validation / test only",
}
CACHE_VERSION = 1
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "build" / "phantom_anatomy"

# scct: upstream HU conversion is exact in -124..76 HU; above, bone values of the derived file are
# uncertain and, averaged over subjects at 2 mm, low (max 770 HU). A linear gain above 80 HU
# brings the thick parts of the vault to 1000-1600 HU, as single scans show.
SCCT_BONE_KNEE_HU = 80.0
SCCT_BONE_GAIN = 2.2
SCCT_BRAIN_RAW_HU = -20.0  # the stripped template's edge (tools/build_atlas.py BRAIN_RAW_HU)
WM_TARGET_HU = 28.0
# Real heads: in-plane Gaussian (mm) that takes most of the scan's own noise out before the
# generator adds noise of a known level and texture.
REAL_DENOISE_MM = 0.8
# Unannotated findings of the real heads (data README), outlined by: parenchyma at least
# REPAIR_DIFF_HU darker than its mirror after 2 mm smoothing, in components >= REPAIR_MIN_ML,
# inside a box (template LPS mm, (lo, hi) per axis) around where the README places it.
REPAIR_DIFF_HU = 4.0
REPAIR_MIN_ML = 2.0
REPAIR_MARGIN_MM = 3
REPAIR_BOXES: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "ge": ((5.0, 80.0), (25.0, 110.0), (-30.0, 30.0)),  # left posterior temporo-occipital (PCA territory)
    "invesalius": ((-80.0, 0.0), (-90.0, -25.0), (-25.0, 40.0)),  # right frontal (left/right as the data README assumes)
}
# Low-frequency hemispheric balance of real heads (:func:`hemispheric_balance`). A real head can
# be darker on one side over whole lobes (the GE head: left M1 / M2 cortex 2-4 HU below its
# counterpart at every percentile, docs/data.md) with no finding annotated there; a study built on
# it carries a hemispheric "early change" its truth does not have. Scale: BALANCE_SIGMA_MM is
# broader than sulci and gyri (texture and partial volume stay) and narrower than an ASPECTS
# cortical region (30-50 mm); BALANCE_PASSES passes, because a deficit confined to the cortex is
# diluted by white matter at that scale (one pass at 6 mm left a third of it on the GE head), each
# pass adding at most BALANCE_MAX_HU (the largest hemispheric deficit seen, 4-5 HU, with margin;
# the estimate extrapolates at the brain edge). Parenchyma only: BALANCE_HU (above CSF, below
# calcification and bone partial volume). BALANCE_TOL_HU: asymmetry left as it is, a quarter of a
# HU (a normal head is not exactly symmetric; the app's region statistic does not resolve less).
# The added HU fade in from CSF to tissue over BALANCE_RAMP_HU.
BALANCE_SIGMA_MM = 6.0
BALANCE_PASSES = 2
BALANCE_MAX_HU = 6.0
BALANCE_HU = (15.0, 45.0)
BALANCE_TOL_HU = 0.25
BALANCE_RAMP_HU = (5.0, 15.0)
# Deformable registration of the template onto a real head (2 mm aligned grid): 80 iterations at
# 4 mm (2 mm iterations cost ~10 minutes on a loaded 2-core host), smooth (SyN[0.2,3,0]), local
# CC: the regions follow ventricles, insula and cortex outline.
REAL_SYN = dict(iterations=(80, 0), shrink=(2, 1), smooth_vox=(1, 0), metric="CC[{f},{m},1,2]", params="SyN[0.2,3,0]")

# Synthetic calcifications (template / scct): template LPS centre (mm), probability, radii (mm),
# peak HU. Physiological calcification is common in adults: pineal ~60 %, choroid plexus ~50-70 %,
# basal ganglia a few % (Whitehead et al. 2015; Yalcin et al. 2016); centres measured on the real
# GE head after the app's registration (pineal 0, 33, 0; glomus +-26, 44, 11).
CALCIFICATIONS = (
    # name, centres, probability, radius range, HU range
    ("pineal", ((0.0, 32.0, 0.0),), 0.6, (1.5, 3.5), (90.0, 350.0)),
    ("choroid_plexus", ((-26.0, 44.0, 11.0), (26.0, 44.0, 11.0)), 0.5, (2.0, 4.0), (70.0, 250.0)),
    ("basal_ganglia", ((-17.0, 2.0, -1.0), (17.0, 2.0, -1.0)), 0.1, (1.0, 2.5), (70.0, 200.0)),
)


def crop_reference(index_to_phys: np.ndarray, shape_zyx: Tuple[int, int, int]) -> sitk.Image:
    """An empty image with the crop's geometry (axis-aligned, as the atlas template)."""
    img = sitk.Image([int(v) for v in shape_zyx[::-1]], sitk.sitkUInt8)
    spacing = np.linalg.norm(index_to_phys[:3, :3], axis=0)
    img.SetSpacing([float(v) for v in spacing])
    img.SetDirection([float(v) for v in (index_to_phys[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in index_to_phys[:3, 3]])
    return img


def _on(img: sitk.Image, ref: sitk.Image, tx: Optional[sitk.Transform] = None, interp=sitk.sitkLinear,
        fill: float = -1024.0) -> np.ndarray:
    out = sitk.Resample(img, ref, tx if tx is not None else sitk.Transform(), interp, fill, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


# ----------------------------------------------------------------------------- reading real heads


def read_real_head(name: str, real_data: Optional[Path] = None) -> sitk.Image:
    """The real head CT ``ge`` or ``invesalius`` as a float32 HU image (LPS; the GE series on the
    app's regular grid with its gantry tilt removed)."""
    root = Path(real_data) if real_data else default_real_data()
    if name == "ge":
        import pydicom

        from aspects.dicom_geometry import sort_slices
        from aspects.volume import series_volume

        files = sorted((root / "ge_tilted_head_dicom" / "dicom").glob("*.dcm"))
        if not files:
            raise InputError(EXIT_USAGE, f"real GE head CT not found under {root / 'ge_tilted_head_dicom'}")
        ds = sort_slices([pydicom.dcmread(str(f)) for f in files])
        stack = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds]).astype(np.float32)
        img = series_volume(stack, ds).image
    elif name == "invesalius":
        path = root / "invesalius_head_ct" / "cranium_ct.nii.gz"
        if not path.is_file():
            raise InputError(EXIT_USAGE, f"InVesalius head CT not found at {path}")
        img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    else:
        raise InputError(EXIT_USAGE, f"no real head called {name!r} (ge, invesalius)")
    return sitk.Clamp(sitk.Cast(img, sitk.sitkFloat32), sitk.sitkFloat32, -1024.0, 3071.0)


# ----------------------------------------------------------------------------- scct with skull


def scct_head(ref: sitk.Image, real_data: Optional[Path] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head HU, brain mask, brain-only HU before the contrast stretch) of the scct template with
    skull on the crop grid ``ref``; -1024 outside the template's field of view."""
    root = (Path(real_data) if real_data else default_real_data()) / "scct_mni"
    files = [root / "scct_HU.nii.gz", root / "scct_stripped_HU.nii.gz"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(EXIT_USAGE, f"scct template missing: {', '.join(missing)}")
    full = _on(sitk.ReadImage(str(files[0]), sitk.sitkFloat32), ref)
    strip = _on(sitk.ReadImage(str(files[1]), sitk.sitkFloat32), ref)
    brain = ndi.binary_fill_holes(strip > SCCT_BRAIN_RAW_HU)
    # One offset: centrum semiovale white matter -> 28 HU (as tools/build_atlas.py calibrates the atlas).
    z_mm = np.array([ref.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(full.shape[0])])
    deep = ndi.distance_transform_edt(brain) > 12
    sel = deep & ((z_mm >= 25) & (z_mm <= 40))[:, None, None] & (strip > 10)
    offset = WM_TARGET_HU - float(np.median(strip[sel]))
    head = full.copy()
    soft = (full > -124.0) & (full <= SCCT_BONE_KNEE_HU)
    head[soft] += offset
    bone = full > SCCT_BONE_KNEE_HU
    head[bone] = SCCT_BONE_KNEE_HU + offset + (full[bone] - SCCT_BONE_KNEE_HU) * SCCT_BONE_GAIN
    return head.astype(np.float32), brain, np.where(brain, strip + offset, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- real heads


def mirror_on_grid(arr: np.ndarray, ref: sitk.Image, order: int = 1) -> np.ndarray:
    """``arr`` (on ``ref``) mirrored about the template's mid-sagittal plane (physical x = 0)."""
    nx = arr.shape[2]
    x_phys = np.array([ref.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(nx)])
    sp = ref.GetSpacing()[0]
    src = (-x_phys - x_phys[0]) / sp  # index of the mirrored x
    if np.allclose(src, np.round(src), atol=1e-4) and order <= 1:
        idx = np.round(src).astype(int)
        ok = (idx >= 0) & (idx < nx)
        out = np.zeros_like(arr)
        out[:, :, ok] = arr[:, :, idx[ok]]
        return out
    zz, yy, xx = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in arr.shape[:2]), src.astype(np.float32), indexing="ij")
    return ndi.map_coordinates(arr, [zz, yy, xx], order=order, mode="constant", cval=0)


def repair_mask(name: str, head: np.ndarray, brain: np.ndarray, ref: sitk.Image) -> np.ndarray:
    """Outline of a real head's unannotated hypodensity (module constants say how); empty when
    the head has none listed."""
    box = REPAIR_BOXES.get(name)
    if box is None:
        return np.zeros(head.shape, bool)
    inner = ndi.binary_erosion(brain, iterations=3)
    w = inner.astype(np.float32)
    num = ndi.gaussian_filter(np.where(inner, head, 0.0).astype(np.float32), 2.0)
    den = ndi.gaussian_filter(w, 2.0)
    smooth = np.where(den > 0.2, num / np.maximum(den, 1e-3), 0.0)
    mirror = mirror_on_grid(smooth, ref)
    mirror_inner = mirror_on_grid(inner.astype(np.uint8), ref, order=0) > 0
    cand = inner & mirror_inner & (mirror - smooth >= REPAIR_DIFF_HU) & (smooth > 5.0) & (smooth < 40.0)
    phys = [np.array([ref.TransformIndexToPhysicalPoint(tuple(int(i) if a == ax else 0 for a in range(3)))[ax]
                      for i in range(ref.GetSize()[ax])]) for ax in range(3)]
    inside = np.ones(head.shape, bool)
    for ax, (lo, hi) in enumerate(box):  # ax: x, y, z; array axes z, y, x
        ok = (phys[ax] >= lo) & (phys[ax] <= hi)
        shape = [1, 1, 1]
        shape[2 - ax] = -1
        inside &= ok.reshape(shape)
    lab, n = ndi.label(cand & inside)
    if n == 0:
        return np.zeros(head.shape, bool)
    sizes = np.bincount(lab.ravel())
    keep = np.flatnonzero(sizes >= REPAIR_MIN_ML * 1000.0)
    keep = keep[keep > 0]
    return ndi.binary_dilation(np.isin(lab, keep), iterations=REPAIR_MARGIN_MM) & brain


def _on_grid(arr: np.ndarray, ref: sitk.Image, grid: sitk.Image, label: bool = False) -> np.ndarray:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.float32))
    img.CopyInformation(ref)
    return _on(img, grid, None, sitk.sitkNearestNeighbor if label else sitk.sitkLinear, 0.0)


@dataclass(frozen=True)
class HemisphereComparison:
    """A head and its deformed contralateral counterpart on the app's aligned grid (``(z, y, x)``)."""

    grid: sitk.Image  # the app's 2 mm template-aligned grid (symmetric in x)
    hu: np.ndarray  # the head (float32 HU, 0 outside the brain)
    brain: np.ndarray  # bool
    contra: np.ndarray  # the counterpart: the mirror deformed onto the head (HU)
    parenchyma: np.ndarray  # bool: where the two can be compared


def hemisphere_comparison(head: np.ndarray, brain: np.ndarray, ref: sitk.Image) -> HemisphereComparison:
    """The head (crop grid ``ref``) on the app's 2 mm template-aligned grid with its contralateral
    counterpart deformed onto it, exactly as the app compares hemispheres
    (:func:`aspects.asymmetry.contralateral`: the mirror, with the few mm by which real
    hemispheres differ in shape registered away) and the parenchyma where the comparison holds
    (:func:`aspects.asymmetry.comparable_parenchyma`, and parenchyma in the counterpart too)."""
    from aspects.asymmetry import comparable_parenchyma, contralateral
    from aspects.preprocess import aligned_grid
    from aspects.atlas import load_atlas

    grid = aligned_grid(load_atlas().template)
    smooth = ndi.gaussian_filter(np.where(brain, head, 0.0).astype(np.float32), 0.8)  # 1 -> 2 mm anti-alias
    den = ndi.gaussian_filter(brain.astype(np.float32), 0.8)
    hu2 = _on_grid(np.where(den > 0.1, smooth / np.maximum(den, 1e-3), 0.0), ref, grid)
    brain2 = _on_grid(brain.astype(np.float32), ref, grid) >= 0.5
    hu2 = np.where(brain2, hu2, 0.0).astype(np.float32)
    contra_hu, contra_brain = contralateral(hu2, brain2, grid)
    ok = comparable_parenchyma(hu2, brain2) & contra_brain & (hu2 > BALANCE_HU[0]) & (hu2 < BALANCE_HU[1])
    ok &= (contra_hu > BALANCE_HU[0]) & (contra_hu < BALANCE_HU[1])
    return HemisphereComparison(grid, hu2, brain2, contra_hu, ok)


def hemispheric_balance(head: np.ndarray, brain: np.ndarray, ref: sitk.Image,
                        sigma_mm: float = BALANCE_SIGMA_MM, tol_hu: float = BALANCE_TOL_HU) -> np.ndarray:
    """HU to add to ``head`` (crop grid ``ref``) so that no part of its parenchyma is darker than
    its contralateral counterpart at the scale ``sigma_mm`` by more than ``tol_hu``.

    The counterpart is the app's (:func:`hemisphere_comparison`), so shape asymmetry is not taken
    for density. Local parenchyma means are normalised convolutions (Knutsson and Westin 1993:
    Gaussian of the masked image over the Gaussian of the mask), so CSF, bone and the brain edge
    do not enter them; their difference is the smooth hemispheric deficit, estimated as a bias
    field is in MR intensity correction (a slowly varying field, Sled et al. 1998) but against the
    other hemisphere instead of a tissue model. Only the darker side is raised (one-sided, added
    HU >= 0): the brighter side, the fine texture and the real partial volume stay as scanned.
    0 outside the brain and in CSF (a ramp over :data:`BALANCE_RAMP_HU`)."""
    cmp = hemisphere_comparison(head, brain, ref)
    w = cmp.parenchyma.astype(np.float32)
    sig = sigma_mm / np.asarray(cmp.grid.GetSpacing(), float)[::-1]
    den = ndi.gaussian_filter(w, sig)
    ok = den > 0.05
    own = ndi.gaussian_filter(cmp.hu * w, sig) / np.maximum(den, 1e-3)
    other = ndi.gaussian_filter(cmp.contra * w, sig) / np.maximum(den, 1e-3)
    deficit2 = np.where(ok, np.clip(other - own - tol_hu, 0.0, BALANCE_MAX_HU), 0.0).astype(np.float32)
    img = sitk.GetImageFromArray(deficit2)
    img.CopyInformation(cmp.grid)
    deficit = _on(img, ref, None, sitk.sitkLinear, 0.0)
    ramp = np.clip((ndi.gaussian_filter(head, 1.0) - BALANCE_RAMP_HU[0]) / (BALANCE_RAMP_HU[1] - BALANCE_RAMP_HU[0]), 0.0, 1.0)
    return (deficit * ramp * brain).astype(np.float32)


def region_differences(cmp: HemisphereComparison, labels: np.ndarray, ref: sitk.Image) -> Dict[str, Dict[int, float]]:
    """Per ASPECTS label (right 1..10, left 11..20), from :func:`hemisphere_comparison` of a head
    whose labels (crop grid ``ref``) are given: the region's parenchyma mean minus that of its
    counterpart (``deformed``, as the app compares) and minus its plain mirror (``mirror``, about
    the template mid-sagittal plane), HU; negative = darker than the other side."""
    from aspects.model_io import mirror

    lab2 = _on_grid(labels, ref, cmp.grid, label=True).astype(np.uint8)
    hu, par = cmp.hu, cmp.parenchyma
    diffs = {"deformed": hu - cmp.contra, "mirror": hu - mirror(hu)}
    inside = (hu > BALANCE_HU[0]) & (hu < BALANCE_HU[1])
    masks = {"deformed": par, "mirror": par & inside & mirror(inside)}
    out: Dict[str, Dict[int, float]] = {}
    for key, diff in diffs.items():
        out[key] = {}
        for lab in range(1, 21):
            sel = (lab2 == lab) & masks[key]
            out[key][lab] = float(diff[sel].mean()) if sel.any() else float("nan")
    return out


def _coordinate_images(ref: sitk.Image) -> list:
    """Three float32 images holding the physical x, y, z of each voxel of ``ref``."""
    size = ref.GetSize()
    idx = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in size[::-1]), indexing="ij")  # z, y, x
    d = np.array(ref.GetDirection()).reshape(3, 3) * np.array(ref.GetSpacing())
    o = np.array(ref.GetOrigin())
    out = []
    for c in range(3):
        arr = (o[c] + d[c, 0] * idx[2] + d[c, 1] * idx[1] + d[c, 2] * idx[0]).astype(np.float32)
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(ref)
        out.append(img)
    return out


def register_real_head(name: str, atlas, ref: sitk.Image, real_data: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """Head HU, field of view, brain, displacement to the template (mm, every 2nd crop voxel) and
    the repaired outline of one real head on the crop grid ``ref`` (see the module docstring)."""
    from aspects.preprocess import preprocess
    from aspects.registration import syn_warp
    from aspects.skullstrip import CUT_VOXELS

    src = read_real_head(name, real_data)
    # The first registration pass as the app ran it up to 0.6.0 (the skull strip's own opening):
    # the archived data sets were made with these registrations (tools/splits/*.json) and rebuild
    # to the pixel; the app's later change of that pass (0.7.0) does not move the heads it draws.
    pre = preprocess(src, atlas, registration_cut_voxels=CUT_VOXELS)
    sp = src.GetSpacing()
    smooth = sitk.SmoothingRecursiveGaussian(src, [REAL_DENOISE_MM, REAL_DENOISE_MM, 0.01]) if REAL_DENOISE_MM else src
    head = _on(smooth, ref, pre.aligned_to_source)
    ones = sitk.Image(src.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(src)
    fov = _on(ones, ref, pre.aligned_to_source, sitk.sitkNearestNeighbor, 0.0) > 0
    brain = _on(sitk.Cast(pre.brain_mask, sitk.sitkFloat32), ref, None, sitk.sitkLinear, 0.0) >= 0.5
    # Deformable: template (moving) onto the head (fixed), both skull-stripped on the aligned grid.
    fixed = sitk.Clamp(pre.aligned, sitk.sitkFloat32, 0.0, 100.0)
    moving = sitk.Clamp(pre.template, sitk.sitkFloat32, 0.0, 100.0)
    coords = syn_warp(fixed, moving, _coordinate_images(pre.aligned), [False] * 3, **REAL_SYN)
    ident = _coordinate_images(pre.aligned)
    al_brain = ndi.binary_dilation(sitk.GetArrayViewFromImage(pre.brain_mask) > 0, iterations=3)
    half = sitk.Image([int(math.ceil(n / 2)) for n in ref.GetSize()], sitk.sitkUInt8)
    half.SetSpacing([2.0 * s for s in ref.GetSpacing()])
    half.SetDirection(ref.GetDirection())
    half.SetOrigin(ref.GetOrigin())
    disp = []
    for w, i in zip(coords, ident):
        d = np.where(al_brain, sitk.GetArrayFromImage(w) - sitk.GetArrayFromImage(i), 0.0).astype(np.float32)
        img = sitk.GetImageFromArray(ndi.gaussian_filter(d, 1.0))
        img.CopyInformation(pre.aligned)
        disp.append(_on(img, half, None, sitk.sitkLinear, 0.0))
    repair = repair_mask(name, head, brain, ref)
    if repair.any():
        mirrored = mirror_on_grid(head, ref)
        wgt = np.clip(ndi.gaussian_filter(repair.astype(np.float32), 1.5) * 1.5, 0.0, 1.0)
        head = (1.0 - wgt) * head + wgt * mirrored
    noise = residual_noise_hu(head, brain)
    return {"head": head.astype(np.float32), "fov": fov, "brain": brain, "disp2": np.stack(disp).astype(np.float32),
            "repair": repair, "noise_hu": np.float32(noise), "ncc": np.float32(pre.qc.get("ncc", 0.0)),
            "spacing": np.asarray(sp, np.float32)}


def residual_noise_hu(head: np.ndarray, brain: np.ndarray) -> float:
    """Robust SD (HU) of the head's fine texture in deep parenchyma, an estimate of the own noise
    the denoising left (1.4826 x MAD of the image minus its 1.5 mm smoothed copy)."""
    deep = ndi.binary_erosion(brain, iterations=8) & (head > 15) & (head < 45)
    if deep.sum() < 1000:
        return 0.0
    r = (head - ndi.gaussian_filter(head, 1.5))[deep]
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def load_or_register(name: str, atlas, ref: sitk.Image, real_data: Optional[Path] = None,
                     cache_dir: Optional[Path] = None, balance: bool = True) -> Dict[str, np.ndarray]:
    """:func:`register_real_head`, cached under ``cache_dir`` (by crop geometry and version), then
    with ``balance`` its head's low-frequency hemispheric deficit filled (:data:`BALANCE_PASSES`
    passes of :func:`hemispheric_balance`; cached apart, keyed by its constants, so the cached
    registration stays valid): ``balance`` holds the HU added and ``noise_hu`` is measured again."""
    cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    key = hashlib.sha1(repr((ref.GetSize(), [round(v, 3) for v in ref.GetOrigin()])).encode()).hexdigest()[:8]
    path = cache_dir / f"{name}-v{CACHE_VERSION}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    else:
        data = register_real_head(name, atlas, ref, real_data)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.npz")
        np.savez_compressed(tmp, **data)
        tmp.rename(path)
    if balance:
        consts = (BALANCE_SIGMA_MM, BALANCE_PASSES, BALANCE_MAX_HU, BALANCE_HU, BALANCE_TOL_HU, BALANCE_RAMP_HU)
        bal_path = path.with_name(f"{path.stem}-balance-{hashlib.sha1(repr(consts).encode()).hexdigest()[:8]}.npz")
        if bal_path.is_file():
            with np.load(bal_path) as z:
                add = z["balance"]
        else:
            head = data["head"]
            for _ in range(BALANCE_PASSES):
                head = head + hemispheric_balance(head, data["brain"], ref)
            add = (head - data["head"]).astype(np.float32)
            tmp = bal_path.with_suffix(".partial.npz")
            np.savez_compressed(tmp, balance=add)
            tmp.rename(bal_path)
        data = dict(data, head=(data["head"] + add).astype(np.float32), balance=add)
        data["noise_hu"] = np.float32(residual_noise_hu(data["head"], data["brain"]))
    return data


def template_index(index_to_phys: np.ndarray, phys_to_template: np.ndarray, disp2: Optional[np.ndarray],
                   bbox: Tuple[slice, slice, slice]) -> np.ndarray:
    """Template voxel index (x, y, z, float) of every crop voxel in ``bbox``, stored (3, z, y, x)."""
    zz, yy, xx = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in bbox), indexing="ij")
    m = phys_to_template @ index_to_phys
    out = np.empty((3,) + zz.shape, np.float32)
    dm = phys_to_template[:3, :3]
    if disp2 is not None:
        d = [ndi.map_coordinates(disp2[c], [zz / 2.0, yy / 2.0, xx / 2.0], order=1, mode="nearest") for c in range(3)]
    for c in range(3):
        v = m[c, 0] * xx + m[c, 1] * yy + m[c, 2] * zz + np.float32(m[c, 3])
        if disp2 is not None:
            v = v + dm[c, 0] * d[0] + dm[c, 1] * d[1] + dm[c, 2] * d[2]
        out[c] = v
    return out


# ----------------------------------------------------------------------------- calcifications


def paint_calcifications(hu: np.ndarray, index_to_phys: np.ndarray, rng: np.random.Generator) -> Dict[str, int]:
    """Physiological calcifications (:data:`CALCIFICATIONS`) in place; returns how many of each."""
    inv = np.linalg.inv(index_to_phys)
    counts: Dict[str, int] = {}
    for name, centres, prob, radii, hus in CALCIFICATIONS:
        present = rng.uniform() < prob
        r = rng.uniform(*radii, size=(len(centres), 3))
        peak = rng.uniform(*hus)
        jitter = rng.normal(0.0, 1.5, size=(len(centres), 3))
        counts[name] = 0
        if not present:
            continue
        for c, rad, jit in zip(centres, r, jitter):
            ci = (inv @ np.append(np.asarray(c) + jit, 1.0))[:3][::-1]  # (z, y, x) index
            pad = int(math.ceil(rad.max())) + 3
            lo = np.maximum(np.floor(ci).astype(int) - pad, 0)
            hi = np.minimum(np.floor(ci).astype(int) + pad + 1, hu.shape)
            g = np.meshgrid(*(np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)), indexing="ij")
            dist = np.sqrt(sum(((g[k] - ci[k]) / rad[::-1][k]) ** 2 for k in range(3)))
            w = np.clip((1.3 - dist) / 0.6, 0.0, 1.0)  # soft edge, ~0.7 mm partial volume
            sub = hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            sub[...] = np.maximum(sub, sub * (1 - w) + w * peak)
            counts[name] += 1
    return counts


__all__ = ["ANATOMIES", "TRAIN_ANATOMIES", "SOURCE_BRAIN_ML", "LICENCES", "crop_reference", "read_real_head", "scct_head",
           "repair_mask", "load_or_register", "hemispheric_balance", "hemisphere_comparison", "HemisphereComparison",
           "region_differences", "template_index", "paint_calcifications", "mirror_on_grid"]

