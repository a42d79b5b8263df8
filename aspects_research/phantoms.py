"""Synthetic head NCCT studies ("phantoms") with known infarct and ASPECTS truth.

Method (docs/data.md has the pictures and the rationale):
1. Anatomy: the atlas template (brain-only NCCT, 1 mm) and its ASPECTS label map. A CSF rim,
   a skull (inner/outer tables > 1000 HU, diploe) and scalp are added around the intracranial
   volume from its distance map, so every head has air, scalp and bone like a scan.
2. A lesion is painted in template space on the label map: acute infarct (hypoattenuation with
   soft margins and loss of grey-white contrast), old infarct (CSF-like, sharp) or haemorrhage.
3. The head is placed in a scanner frame with a random rigid pose, scale and a smooth B-spline
   deformation, and sampled ONCE on a ~1 mm grid aligned with the output slices (sub-planes
   across each slice for the partial-volume average), then upsampled in-plane to 512 x 512.
4. CT noise, scanner-like storage (int16 or 12-bit unsigned, rescale intercept -1024) and DICOM
   writing live in :mod:`aspects_research.phantom_dicom`.

Every random choice comes from its own child generator of ``np.random.SeedSequence(seed)``, so
fixing one option (e.g. ``kind="normal"``) leaves the pose, noise and everything else of that
seed unchanged: the same seed with and without infarct differs only by the lesion.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.atlas import outside_mca
from aspects.errors import EXIT_USAGE, InputError
from aspects.labels import REGION_CODES, SIDES, label_value
from aspects_research.phantom_noise import load_nps, nps_noise, sigma_for_thickness
from aspects.scoring import DEFAULT_INVOLVEMENT_FRACTION, region_findings

# A region counts as involved in the truth when at least this fraction of its voxels (source grid)
# is infarct: the app scorer's default, so a perfect segmentation scores exactly the truth.
# Rationale in docs/data.md: small enough that a clearly visible partial lesion of a small region
# (IC, C, I) counts, as a reader would score it; large enough that the soft margin of a lesion in
# a neighbouring region, or a registration error of 1-2 voxels, does not.
INVOLVEMENT_FRACTION: float = DEFAULT_INVOLVEMENT_FRACTION

KINDS: Tuple[str, ...] = ("acute", "normal", "old_infarct", "haemorrhage", "leukoaraiosis")
KIND_WEIGHTS: Tuple[float, ...] = (0.7, 0.1, 0.1, 0.1, 0.0)  # generator v1 (a trailing 0: same draws as before)
THICKNESSES: Tuple[float, ...] = (0.625, 1.0, 2.5, 5.0)
GENERATORS: Tuple[str, ...] = ("v1", "v2")
# Generator v2 (docs/data.md): real lesion shapes, several anatomy sources, early change well
# represented, thin and 5 mm slices, scanner-like noise, leukoaraiosis controls.
V2_KIND_WEIGHTS: Tuple[float, ...] = (0.62, 0.1, 0.1, 0.08, 0.1)  # over KINDS
V2_THICKNESSES: Tuple[float, ...] = (0.625, 1.0, 2.5, 5.0)
V2_THICKNESS_WEIGHTS: Tuple[float, ...] = (0.2, 0.2, 0.1, 0.5)
# HU drop of acute infarcts: 1-2 HU (12 %), early change 2-4 HU (38 %), 4-12 HU (50 %).
V2_HU_DROP_MIXTURE: Tuple[Tuple[float, float, float], ...] = ((0.12, 1.0, 2.0), (0.38, 2.0, 4.0), (0.5, 4.0, 12.0))
V2_NON_MCA_FRACTION = 0.12  # acute v2 cases whose lesion lies outside the MCA territory
# Acute MCA shapes: this fraction is drawn among those that cover >= 10 % of an ASPECTS region in
# template space (62 % of the MCA shapes), the rest among all (small lesions, ASPECTS 10).
V2_SCORED_LESION_FRACTION = 0.8
V2_SIGMA_5MM = (2.5, 4.5)  # noise SD of a 5 mm slice; thinner slices sqrt(5 / t) times more
V2_SIGMA_MAX = 14.0
# Acute loss of grey-white contrast. "compress" (v1, and v2 until session 26): every voxel is
# pulled towards the lesion's mean, so voxels darker than it (white matter, the CSF-bordered
# caudate head and insula) lose less than the drop, and those far below it rise; measured on the fresh
# draw, a caudate 73 % infarcted at 2.4 HU darkened by 1.1 HU and the cortex by 1.2-1.4x the
# nominal drop (docs/data.md). Ischaemic oedema only ever lowers CT numbers (net water uptake;
# Dzialowski et al. 2004, Broocks et al. 2018): "darken" (v2's default) lowers every tissue voxel by the
# same peak and tissue above the lesion's white-matter level by a further share (the same loss of
# grey-white contrast), scaled so that the mean drop over the truth is still the drawn HU.
CONTRAST_LOSS: Tuple[str, ...] = ("compress", "darken")
# Which tissue leukoaraiosis darkens (aspects_research.phantom_lesions.paint_leukoaraiosis).
# "white-matter" (the default since session 38): the head's own white matter, below its grey-white
# midpoint; small-vessel disease spares the cortex. "legacy" (the archived v2 sets and the shipped
# model's training data): tissue below 33 HU, the templates' midpoint, which on a real head with a
# lower grey-white contrast (the InVesalius head: 96 % of its tissue below 33 HU) darkens the cortex
# too, and the app read its one-sided part as acute infarct (docs/data.md).
LEUKOARAIOSIS_MODELS: Tuple[str, ...] = ("white-matter", "legacy")
# How big a v2 head is. "adult" (the default since session 40): the brain volume the app measures
# (aspects.json qc.brain_volume_ml) drawn uniformly from ADULT_BRAIN_ML, the scale derived per
# anatomy source from its volume at scale 1 (phantom_anatomy.SOURCE_BRAIN_ML). "legacy" (the
# archived v2 sets and the shipped model's training data): scale 0.9-1.1 on every source, which
# made scct heads of up to 2.4 l that the app's QC rightly called implausible (docs/data.md).
HEAD_SIZES: Tuple[str, ...] = ("adult", "legacy")
# v2 age-related atrophy (aspects_research.phantom_atrophy): "none" (the default: the sources' own
# brains, every set made before session 41) or "elderly" (a severity drawn uniformly from 0..1).
ATROPHY_MODELS: Tuple[str, ...] = ("none", "elderly")
# Adult intracranial volumes span about 1.15-1.8 l; the app's brain volume reads ~5 % below the
# intracranial volume on the real heads (GE 1509 / 1579 ml, InVesalius 1533 / 1626 ml).
ADULT_BRAIN_ML = (1100.0, 1700.0)
LEGACY_SCALE = (0.9, 1.1)
CONTRAST_LEVEL_PERCENTILE = 25.0  # "darken": the lesion's white-matter level, below which no extra loss

# Vascular patterns of acute MCA infarcts (region codes, one hemisphere) and their draw weights.
PATTERNS: Dict[str, Tuple[str, ...]] = {
    "M1": ("M1",),
    "M2": ("M2",),
    "M3": ("M3",),
    "M4": ("M4",),
    "M5": ("M5",),
    "M6": ("M6",),
    "deep": ("L", "IC"),  # lenticulostriate
    "striatocapsular": ("C", "L", "IC"),
    "insula": ("I",),
    "cortical_bg": ("I", "M1", "M2", "M3"),  # M1-M3 + insula
    "superior_division": ("I", "M1", "M4", "M5"),
    "inferior_division": ("M2", "M3", "M6"),
    "deep_insular": ("L", "IC", "I"),
    "whole_mca": REGION_CODES,
}
PATTERN_WEIGHTS: Dict[str, float] = {
    "M1": 1, "M2": 1.5, "M3": 1, "M4": 1, "M5": 1, "M6": 1, "deep": 2, "striatocapsular": 1,
    "insula": 1, "cortical_bg": 2, "superior_division": 1.5, "inferior_division": 1.5,
    "deep_insular": 1.5, "whole_mca": 1.5,
}
OLD_PATTERNS: Tuple[str, ...] = ("M1", "M2", "M3", "M4", "M5", "M6", "deep", "insula")
# Negative controls: infarcts OUTSIDE the MCA territory (arterial territories of Liu et al. 2023,
# level-1 names of ``aspects.atlas.ARTERIAL_RIGHT``), never drawn at random (only by --pattern).
# ASPECTS stays 10 on both sides; the app must still segment them and flag infarct_outside_mca.
TERRITORY_PATTERNS: Dict[str, Tuple[str, ...]] = {
    "aca": ("ACA",),  # anterior cerebral artery: medial frontal and parasagittal cortex + white matter
    "pca": ("PCAT", "PCAO"),  # posterior cerebral artery: occipital, medial / inferior temporal cortex
    "thalamus": ("PCTP",),  # thalamoperforators / posterior choroidal: thalamus
    "cerebellum": ("SC", "IC"),  # superior and inferior cerebellar arteries
}
ALL_PATTERNS: Tuple[str, ...] = tuple(PATTERNS) + tuple(TERRITORY_PATTERNS)
# Part of a territory pattern's tissue that a lesion takes (the territories are large: ACA ~90 ml,
# PCA ~70 ml per side), and the distance kept from every ASPECTS region so the truth stays 10.
TERRITORY_COVER = (0.25, 0.6)
TERRITORY_REGION_GAP_MM = 3.0

# CT numbers of the synthetic tissues (HU).
AIR_HU = -1000.0
CSF_HU = 6.0
SCALP_HU = 45.0
FAT_HU = -90.0
BONE_TABLE_HU = 1700.0  # inner/outer tables (cortical bone)
BONE_DIPLOE_HU = 750.0

# Template HU -> phantom HU (tissue_hu): the v2 template is calibrated to white matter 28 HU
# (aspects-build-atlas); its grey-white contrast, a population average, is stretched about it.
TEMPLATE_WM_HU = 28.0
TEMPLATE_GM_HU = 40.0  # above this the template is not parenchyma of a single scan (see tissue_hu)
CONTRAST_STRETCH = 1.4
TISSUE_MIN_HU = 16.0  # template voxels above this are parenchyma (CSF ~0-10 HU, white matter 28)

INPLANE_SIZE = 512
NECK_EXTRA_MM = 16.0  # template crop extends this far below the head for the neck
PIXEL_RANGE_MM = (0.40, 0.50)


@dataclass(frozen=True)
class PhantomOptions:
    """Every random choice of one case; ``None`` = draw it from the seed."""

    kind: Optional[str] = None
    thickness: Optional[float] = None
    hu_drop: Optional[float] = None
    pattern: Optional[str] = None
    side: Optional[str] = None
    tilt_deg: Optional[float] = None  # gantry tilt; 0 unless given (see docs/data.md)
    noise_hu: Optional[float] = None
    deform: bool = True
    pose: bool = True  # random rotation/scale/offset; False = template pose, scale 1
    pixel_mm: Optional[float] = None
    matrix: int = INPLANE_SIZE  # rows = columns; smaller (e.g. 128) only for fast tests
    generator: str = "v1"  # "v2": real lesion shapes, anatomy sources, scanner noise (docs/data.md)
    anatomy: Optional[str] = None  # v2: template / scct / ge / invesalius (default: drawn for the split)
    split: str = "train"  # v2: which lesion shapes (and anatomies) a case may use
    lesion_id: Optional[str] = None  # v2: a SOOP mask ID instead of a drawn one
    contrast_loss: Optional[str] = None  # acute grey-white contrast loss (CONTRAST_LOSS); None: v2 "darken", v1 "compress"
    leukoaraiosis: Optional[str] = None  # LEUKOARAIOSIS_MODELS; None: "white-matter"
    head_size: Optional[str] = None  # HEAD_SIZES; None: v2 "adult", v1 "legacy"
    atrophy: str = "none"  # ATROPHY_MODELS (v2)
    atrophy_severity: Optional[float] = None  # 0..1 instead of the drawn one (implies atrophy)
    # v2 real heads: their low-frequency hemispheric asymmetry filled (docs/data.md); False keeps the
    # head as scanned (the InVesalius head ~1 HU darker on the right): for testing specificity on a
    # naturally asymmetric normal head, not for training (the GE head's left lesion stays too)
    balanced: bool = True


@dataclass(frozen=True)
class CaseParams:
    """The resolved parameters of one case (all random choices made)."""

    seed: int
    kind: str
    thickness: float
    hu_drop: float
    pattern: Optional[str]
    side: Optional[str]
    tilt_deg: float
    noise_hu: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    scale: float
    deform_mm: float
    pixel_mm: Optional[float]  # None: drawn between the smallest FOV that fits the head and 0.5 mm
    pixel_u: float
    matrix: int
    lesion_hu: float  # old infarct / haemorrhage CT number (0 for acute / normal)
    generator: str = "v1"
    anatomy: str = "template"
    split: Optional[str] = None  # v2: lesion-shape split
    lesion_id: Optional[str] = None  # v2: SOOP mask ID (acute / old infarct), None for an atlas pattern
    lesion_mirror: bool = False  # the SOOP mask flipped to the other hemisphere
    noise_curve: Optional[str] = None  # v2: measured NPS used (aspects_research.phantom_noise)
    heterogeneity: float = 0.0  # v2 acute: relative spatial variation of the drop
    margin_mm: float = 0.0  # v2 acute: Gaussian edge of the lesion
    band_mm: float = 0.0  # v2 leukoaraiosis: periventricular band; old infarct: ex-vacuo widening
    detail_hu: float = 0.0  # v2 leukoaraiosis drop / old infarct gliotic rim drop (HU)
    contrast_loss: str = "compress"  # acute: how grey-white contrast is lost (CONTRAST_LOSS)
    balanced: bool = True  # v2 real heads: hemispheric asymmetry filled (PhantomOptions.balanced)
    leukoaraiosis: str = "white-matter"  # v2 leukoaraiosis: the tissue it darkens (LEUKOARAIOSIS_MODELS)
    head_size: str = "legacy"  # how the scale was drawn (HEAD_SIZES; --no-pose: 1 either way); v1 and sets before session 40: legacy
    atrophy: float = 0.0  # v2: atrophy severity 0..1 (aspects_research.phantom_atrophy); 0: none


@dataclass(frozen=True)
class Anatomy:
    """Template-space head model, cropped to the head (all arrays ``(z, y, x)``, 1 mm)."""

    brain_hu: np.ndarray  # float32: brain HU, CSF in the intracranial rim, AIR outside
    labels: np.ndarray  # uint8 ASPECTS labels (aspects.labels table)
    territories: np.ndarray  # uint8 arterial territory level-1 labels (aspects.atlas.TERRITORY_GROUPS)
    tissue: np.ndarray  # bool: brain parenchyma (not CSF) where lesions may appear
    shell_dist: np.ndarray  # float32 distance (mm) outside the intracranial volume, 0 inside
    skull_base: np.ndarray  # float32 0..1: how far below the brain's base (thicker bone there)
    neck_hu: np.ndarray  # float32 neck tissue below the head (AIR elsewhere)
    index_to_phys: np.ndarray  # 4x4: crop index (x, y, z, 1) -> template physical (LPS)
    centre: np.ndarray  # physical centre of the intracranial volume (mm)
    name: str = "template"  # anatomy source (aspects_research.phantom_anatomy.ANATOMIES)
    head: Optional[np.ndarray] = None  # float32 complete head HU (scct, real heads); None: synthetic skull
    fov: Optional[np.ndarray] = None  # bool: where a real head's scan has data
    disp2: Optional[np.ndarray] = None  # (3, z/2, y/2, x/2) mm: crop point -> template point displacement
    phys_to_template: Optional[np.ndarray] = None  # 4x4 template physical -> template voxel index
    template_grid: Optional[tuple] = None  # aspects_research.phantom_lesions.template_grid of the atlas template
    ventricles: Optional[np.ndarray] = None  # bool lateral ventricles (v2 old infarct / leukoaraiosis)
    native_noise_hu: float = 0.0  # SD of the source's own remaining noise (real heads)
    calcify: bool = False  # synthetic calcifications may be painted (templates)


@dataclass
class Phantom:
    """One generated case on its source grid (axis 0 = ascending along the slice normal)."""

    params: CaseParams
    hu: np.ndarray  # float32 (z, y, x) HU incl. noise (before integer storage)
    infarct: np.ndarray  # uint8 acute infarct mask
    regions: np.ndarray  # uint8 ASPECTS labels
    extra_masks: Dict[str, np.ndarray]  # "old_infarct" / "haemorrhage" masks
    origin: np.ndarray  # physical centre of pixel (0, 0) of slice 0
    row: np.ndarray  # unit vector along a row (increasing column index)
    col: np.ndarray  # unit vector down a column (increasing row index)
    step: np.ndarray  # physical step from one slice's origin to the next (table motion)
    pixel_mm: float
    truth: dict = field(default_factory=dict)
    outside_mca_voxels: int = 0  # acute infarct voxels outside every region, in ACA / PCA / VB territory
    # uint8: voxels the lesion's soft weight reaches at all (truth = weight >= 0.5); the rest of the
    # study is identical to the case's normal twin (same seed, kind normal)
    lesion_reach: Optional[np.ndarray] = None

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row, self.col)
        return n / np.linalg.norm(n)

    @property
    def slice_spacing(self) -> float:
        return float(abs(np.dot(self.step, self.normal)))

    def sitk_image(self, arr: np.ndarray) -> sitk.Image:
        """``arr`` on this case's source grid as a SimpleITK image with the geometry that
        SimpleITK's series reader gives the DICOM series. With gantry tilt that is ITK's unsheared
        convention (z spacing = distance between slice positions): index-aligned with the pixels."""
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetSpacing((self.pixel_mm, self.pixel_mm, float(np.linalg.norm(self.step))))
        img.SetDirection(tuple(float(v) for v in np.column_stack([self.row, self.col, self.normal]).ravel()))
        return img


# ----------------------------------------------------------------------------- parameters


def _child_rngs(seed: int) -> Dict[str, np.random.Generator]:
    # Appended names only: SeedSequence children are indexed, so the v1 streams never change.
    names = ("choice", "pose", "deform", "skull", "lesion", "noise", "dicom", "v2", "calc", "atrophy")
    seqs = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, seqs)}


def resolve_params(seed: int, opts: PhantomOptions = PhantomOptions()) -> CaseParams:
    """Draw every random choice of a case (in a fixed order, so fixing one keeps the others)."""
    check_options(opts)
    r = _child_rngs(seed)["choice"]
    kind = str(r.choice(KINDS, p=np.array(KIND_WEIGHTS) / sum(KIND_WEIGHTS)))
    thickness = float(r.choice(THICKNESSES))
    hu_drop = float(r.uniform(2.0, 12.0))
    names = list(PATTERNS)
    w = np.array([PATTERN_WEIGHTS[n] for n in names], float)
    pattern = str(r.choice(names, p=w / w.sum()))
    old_pattern = str(r.choice(OLD_PATTERNS))
    side = str(r.choice(SIDES))
    noise = float(r.uniform(3.0, 6.0))
    yaw, roll = (float(v) for v in r.uniform(-15.0, 15.0, 2))
    pitch = float(r.uniform(-10.0, 10.0))
    scale = float(r.uniform(*LEGACY_SCALE))
    deform_mm = float(r.uniform(2.0, 4.0))
    old_hu = float(r.uniform(5.0, 15.0))
    bleed_hu = float(r.uniform(55.0, 75.0))
    pixel_u = float(r.uniform(0.0, 1.0))

    kind = opts.kind or kind
    if kind == "old_infarct":
        pattern = opts.pattern or old_pattern
    elif kind == "acute":
        pattern = opts.pattern or pattern
    else:
        pattern = None
    lesion_hu = {"old_infarct": old_hu, "haemorrhage": bleed_hu}.get(kind, 0.0)
    contrast_loss = opts.contrast_loss or ("darken" if opts.generator == "v2" else "compress")
    if not opts.pose:
        yaw = roll = pitch = 0.0
        scale = 1.0
    if opts.generator == "v2":
        v1 = dict(seed=int(seed), yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll, scale=scale,
                  deform_mm=deform_mm if opts.deform else 0.0, pixel_u=pixel_u, side=side, old_hu=old_hu, bleed_hu=bleed_hu,
                  contrast_loss=contrast_loss)
        return _resolve_v2(seed, opts, v1)
    return CaseParams(
        seed=int(seed),
        kind=kind,
        thickness=float(opts.thickness if opts.thickness is not None else thickness),
        hu_drop=float(opts.hu_drop if opts.hu_drop is not None else hu_drop) if kind == "acute" else 0.0,
        pattern=pattern,
        side=(opts.side or side) if kind != "normal" else None,
        tilt_deg=float(opts.tilt_deg or 0.0),
        noise_hu=float(opts.noise_hu if opts.noise_hu is not None else noise),
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        scale=scale,
        deform_mm=deform_mm if opts.deform else 0.0,
        pixel_mm=float(opts.pixel_mm) if opts.pixel_mm is not None else None,
        pixel_u=pixel_u,
        matrix=int(opts.matrix),
        lesion_hu=lesion_hu,
        contrast_loss=contrast_loss,
    )


def _resolve_v2(seed: int, opts: PhantomOptions, v1: dict) -> CaseParams:
    """Generator v2 draws (own child generator, fixed order; pose and side as in v1)."""
    from aspects_research import phantom_lesions as PL
    from aspects_research.phantom_anatomy import ANATOMIES, TRAIN_ANATOMIES

    r = _child_rngs(seed)["v2"]
    kind = str(r.choice(KINDS, p=np.array(V2_KIND_WEIGHTS) / sum(V2_KIND_WEIGHTS)))
    thickness = float(r.choice(V2_THICKNESSES, p=np.array(V2_THICKNESS_WEIGHTS) / sum(V2_THICKNESS_WEIGHTS)))
    which = int(r.choice(len(V2_HU_DROP_MIXTURE), p=[m[0] for m in V2_HU_DROP_MIXTURE]))
    hu_drop = float(r.uniform(*V2_HU_DROP_MIXTURE[which][1:]))
    allowed = TRAIN_ANATOMIES if opts.split == "train" else ANATOMIES
    anatomy = str(r.choice(allowed))
    non_mca = bool(r.uniform() < V2_NON_MCA_FRACTION)
    lesion_u, old_u = float(r.uniform()), float(r.uniform())
    old_group = "mca" if r.uniform() < 0.75 else "non_mca"
    sigma5 = float(r.uniform(*V2_SIGMA_5MM))
    curve = str(r.choice(("ge", "invesalius")))
    het, margin = float(r.uniform(0.0, 0.35)), float(r.uniform(0.7, 1.5))
    band, leuko_drop = float(r.uniform(3.0, 12.0)), float(r.uniform(4.0, 9.0))
    ex_vacuo, gliosis = float(r.uniform(0.5, 3.0)), float(r.uniform(2.0, 8.0))
    scored_only = bool(r.uniform() < V2_SCORED_LESION_FRACTION)

    kind = opts.kind or kind
    thickness = float(opts.thickness if opts.thickness is not None else thickness)
    anatomy = opts.anatomy or anatomy
    if anatomy not in allowed:
        raise InputError(EXIT_USAGE, f"--anatomy {anatomy} is not allowed in the {opts.split} split "
                                     "(InVesalius is GPL-2: validation / test studies only)")
    side = opts.side or v1["side"]
    pattern = opts.pattern if kind in ("acute", "old_infarct") else None
    lesion_id, mirror = None, False
    if kind in ("acute", "old_infarct") and pattern is None:
        if opts.lesion_id is not None:
            e = PL.entry(opts.lesion_id)
        else:
            group = ("non_mca" if non_mca else "mca") if kind == "acute" else old_group
            candidates = PL.pool(opts.split, group)
            if kind == "acute" and group == "mca" and scored_only:  # shapes that reach an ASPECTS region
                candidates = [c for c in candidates if c.involved] or candidates
            e = candidates[min(len(candidates) - 1, int((lesion_u if kind == "acute" else old_u) * len(candidates)))]
        lesion_id, mirror = e.mask_id, e.side != side
    if kind == "old_infarct" and pattern is None and lesion_id is None:
        pattern = "M2"
    noise = float(opts.noise_hu) if opts.noise_hu is not None else min(V2_SIGMA_MAX, sigma_for_thickness(sigma5, thickness))
    detail = {"leukoaraiosis": leuko_drop, "old_infarct": gliosis}.get(kind, 0.0)
    head_size = opts.head_size or HEAD_SIZES[0]
    scale = v1["scale"]
    if head_size == "adult" and opts.pose:
        # The legacy draw's uniform variate, reused, so that a seed keeps every other choice.
        u = (scale - LEGACY_SCALE[0]) / (LEGACY_SCALE[1] - LEGACY_SCALE[0])
        scale = adult_scale(anatomy, u)
    # Its own generator: drawing it leaves every other choice of the seed as it was.
    atrophy = float(_child_rngs(seed)["atrophy"].uniform()) if opts.atrophy == "elderly" else 0.0
    if opts.atrophy_severity is not None:
        atrophy = float(opts.atrophy_severity)
    return CaseParams(
        seed=v1["seed"], kind=kind, thickness=thickness,
        hu_drop=float(opts.hu_drop if opts.hu_drop is not None else hu_drop) if kind == "acute" else 0.0,
        pattern=pattern, side=side if kind not in ("normal", "leukoaraiosis") else None,
        tilt_deg=float(opts.tilt_deg or 0.0), noise_hu=noise, yaw_deg=v1["yaw_deg"], pitch_deg=v1["pitch_deg"],
        roll_deg=v1["roll_deg"], scale=scale, deform_mm=v1["deform_mm"],
        pixel_mm=float(opts.pixel_mm) if opts.pixel_mm is not None else None, pixel_u=v1["pixel_u"],
        matrix=int(opts.matrix), lesion_hu={"old_infarct": v1["old_hu"] - 5.0, "haemorrhage": v1["bleed_hu"]}.get(kind, 0.0),
        generator="v2", anatomy=anatomy, split=opts.split, lesion_id=lesion_id, lesion_mirror=mirror,
        noise_curve=curve, heterogeneity=het, margin_mm=margin,
        band_mm={"leukoaraiosis": band, "old_infarct": ex_vacuo}.get(kind, 0.0), detail_hu=detail,
        contrast_loss=v1["contrast_loss"], balanced=opts.balanced,
        leukoaraiosis=opts.leukoaraiosis or LEUKOARAIOSIS_MODELS[0], head_size=head_size, atrophy=atrophy,
    )


def adult_scale(anatomy: str, u: float) -> float:
    """Linear scale of anatomy source ``anatomy`` whose brain volume, as the app measures it, is
    the fraction ``u`` (0..1) of the way through :data:`ADULT_BRAIN_ML`."""
    from aspects_research.phantom_anatomy import SOURCE_BRAIN_ML

    target = ADULT_BRAIN_ML[0] + float(u) * (ADULT_BRAIN_ML[1] - ADULT_BRAIN_ML[0])
    return float((target / SOURCE_BRAIN_ML[anatomy]) ** (1.0 / 3.0))


def check_options(opts: PhantomOptions) -> None:
    """Reject impossible options with a one-line :class:`InputError`."""

    def bad(msg: str) -> None:
        raise InputError(EXIT_USAGE, msg)

    if opts.kind is not None and opts.kind not in KINDS:
        bad(f"--kind must be one of {', '.join(KINDS)}, not {opts.kind!r}")
    if opts.pattern is not None and opts.pattern not in ALL_PATTERNS:
        bad(f"--pattern must be one of {', '.join(ALL_PATTERNS)}, not {opts.pattern!r}")
    if opts.side is not None and opts.side not in SIDES:
        bad(f"--side must be left or right, not {opts.side!r}")
    if opts.thickness is not None and not 0.5 <= opts.thickness <= 10.0:
        bad(f"--thickness must be 0.5..10 mm, not {opts.thickness}")
    if opts.hu_drop is not None and not 0.5 <= opts.hu_drop <= 30.0:
        bad(f"--hu-drop must be 0.5..30 HU, not {opts.hu_drop}")
    if opts.tilt_deg is not None and not -30.0 <= opts.tilt_deg <= 30.0:
        bad(f"--tilt must be -30..30 degrees, not {opts.tilt_deg}")
    if opts.noise_hu is not None and not 0.0 <= opts.noise_hu <= 50.0:
        bad(f"--noise must be 0..50 HU, not {opts.noise_hu}")
    if opts.pixel_mm is not None and not 0.2 <= opts.pixel_mm <= 4.0:
        bad(f"--pixel must be 0.2..4.0 mm, not {opts.pixel_mm}")
    if not (64 <= opts.matrix <= 1024 and opts.matrix % 2 == 0):
        bad(f"--matrix must be an even number 64..1024, not {opts.matrix}")
    if opts.generator not in GENERATORS:
        bad(f"--generator must be one of {', '.join(GENERATORS)}, not {opts.generator!r}")
    if not opts.balanced and opts.generator != "v2":
        bad("--no-balance applies to the real heads of --generator v2")
    if opts.contrast_loss is not None and opts.contrast_loss not in CONTRAST_LOSS:
        bad(f"--contrast-loss must be one of {', '.join(CONTRAST_LOSS)}, not {opts.contrast_loss!r}")
    if opts.leukoaraiosis is not None and opts.leukoaraiosis not in LEUKOARAIOSIS_MODELS:
        bad(f"--leukoaraiosis must be one of {', '.join(LEUKOARAIOSIS_MODELS)}, not {opts.leukoaraiosis!r}")
    if opts.head_size is not None and opts.head_size not in HEAD_SIZES:
        bad(f"--head-size must be one of {', '.join(HEAD_SIZES)}, not {opts.head_size!r}")
    if opts.head_size == "adult" and opts.generator != "v2":
        bad("--head-size adult needs --generator v2 (v1 draws its scale as it always did)")
    if opts.atrophy not in ATROPHY_MODELS:
        bad(f"--atrophy must be one of {', '.join(ATROPHY_MODELS)}, not {opts.atrophy!r}")
    if opts.atrophy_severity is not None and not 0.0 <= opts.atrophy_severity <= 1.0:
        bad(f"--atrophy-severity must be 0..1, not {opts.atrophy_severity}")
    if (opts.atrophy != "none" or opts.atrophy_severity is not None) and opts.generator != "v2":
        bad("--atrophy and --atrophy-severity need --generator v2")
    if opts.generator == "v1" and (opts.anatomy not in (None, "template") or opts.lesion_id is not None
                                   or opts.kind == "leukoaraiosis"):
        bad("--anatomy, --lesion-id and --kind leukoaraiosis need --generator v2")
    from aspects_research.phantom_anatomy import ANATOMIES
    from aspects_research.phantom_lesions import SPLITS

    if opts.anatomy is not None and opts.anatomy not in ANATOMIES:
        bad(f"--anatomy must be one of {', '.join(ANATOMIES)}, not {opts.anatomy!r}")
    if opts.split not in SPLITS:
        bad(f"--split must be one of {', '.join(SPLITS)}, not {opts.split!r}")
    if opts.lesion_id is not None and opts.pattern is not None:
        bad("give either --pattern or --lesion-id, not both")


# ----------------------------------------------------------------------------- anatomy


def _ball(radius: int) -> np.ndarray:
    g = np.arange(-radius, radius + 1)
    return (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= radius * radius


def _index_to_phys(img: sitk.Image) -> np.ndarray:
    d = np.array(img.GetDirection(), float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = d @ np.diag(img.GetSpacing())
    m[:3, 3] = img.GetOrigin()
    return m


def _signed_distance_2x(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm, > 0 outside) to ``mask`` closed by 4 mm and hole-filled, via a 2x grid."""
    padded = [int(math.ceil(n / 2)) * 2 for n in mask.shape]
    m = np.zeros(padded, np.float32)
    m[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    low = m.reshape(padded[0] // 2, 2, padded[1] // 2, 2, padded[2] // 2, 2).mean(axis=(1, 3, 5)) >= 0.5
    low = ndi.binary_fill_holes(ndi.binary_closing(low, structure=_ball(2)) | low)
    sp = 2.0 * spacing
    sd = ndi.distance_transform_edt(~low, sampling=sp) - ndi.distance_transform_edt(low, sampling=sp)
    up = ndi.zoom(sd.astype(np.float32), 2, order=1, mode="nearest", grid_mode=True)
    return up[: mask.shape[0], : mask.shape[1], : mask.shape[2]]


def tissue_hu(t: np.ndarray) -> np.ndarray:
    """Template HU -> phantom HU: contrast x CONTRAST_STRETCH about white matter (28 HU) up to
    grey matter (40 HU), x0.25 above: the template's brighter parts (posterior fossa next to the
    petrous bone, falx, venous sinuses; up to 76 HU, 100 ml above 40 HU) stay at 45-54 HU, below
    acute blood (55-75 HU), as in a scan without beam hardening."""
    out = TEMPLATE_WM_HU + CONTRAST_STRETCH * (t - TEMPLATE_WM_HU)
    knee = TEMPLATE_WM_HU + CONTRAST_STRETCH * (TEMPLATE_GM_HU - TEMPLATE_WM_HU)
    out = np.where(t > TEMPLATE_GM_HU, knee + 0.25 * (t - TEMPLATE_GM_HU), out)
    return np.clip(out, 0.0, 90.0).astype(np.float32)


def build_anatomy(template: sitk.Image, labels: sitk.Image, territories: Optional[sitk.Image] = None,
                  csf_rim_mm: float = 2.0, margin_mm: float = 24.0) -> Anatomy:
    """Head model from a brain-only NCCT template (HU), its ASPECTS label map and arterial
    territories (same grid; no territories: none, so only MCA patterns can be painted).

    The template's grey-white contrast (a population average) is stretched by CONTRAST_STRETCH
    about white matter (28 HU) towards the 8-10 HU of a single scan; CSF lands at 0-10 HU.
    """
    t = sitk.GetArrayFromImage(sitk.Cast(template, sitk.sitkFloat32))
    lab = sitk.GetArrayFromImage(labels).astype(np.uint8)
    terr = (sitk.GetArrayFromImage(territories).astype(np.uint8) if territories is not None
            else np.zeros_like(lab))
    if not t.shape == lab.shape == terr.shape:
        raise InputError(EXIT_USAGE, f"atlas template {t.shape}, label map {lab.shape} and territories {terr.shape} differ in size")
    spacing = np.array(template.GetSpacing(), float)[::-1]  # (z, y, x)
    brain = t > 0.5
    zz, yy, xx = np.nonzero(brain)
    pad = int(math.ceil(margin_mm / spacing.min()))
    lo = np.array([zz.min(), yy.min(), xx.min()]) - pad
    hi = np.array([zz.max(), yy.max(), xx.max()]) + pad + 1
    m = _index_to_phys(template)
    neck_pad = int(math.ceil(NECK_EXTRA_MM / spacing[0]))
    if m[2, 2] > 0:  # room for the neck at the inferior end of the slice axis
        lo[0] -= neck_pad
    else:
        hi[0] += neck_pad
    # Crop to the head, padding where the template grid is tighter than skull + scalp.
    widths = [(max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, t.shape)]
    sl = tuple(slice(max(0, a), min(b, n)) for a, b, n in zip(lo, hi, t.shape))
    t, lab, terr = np.pad(t[sl], widths), np.pad(lab[sl], widths), np.pad(terr[sl], widths)
    brain = t > 0.5
    # Intracranial volume: the brain closed over sulci, filled, plus a CSF rim; the signed
    # distance to it is computed at 2 mm (fast) and interpolated, good to ~0.5 mm.
    sd = _signed_distance_2x(brain, spacing)
    intracranial = sd <= csf_rim_mm
    shell = np.maximum(sd - csf_rim_mm, 0.0).astype(np.float32)
    hu = np.full(t.shape, AIR_HU, np.float32)
    hu[intracranial] = CSF_HU
    hu[brain] = tissue_hu(t[brain])
    # The template's outermost 3 mm carry partial-volume dura/bone (> 45 HU): make them CSF so
    # that no hyperdense rim sits inside the CSF space (it would mimic blood and a second table).
    rim = brain & ~ndi.binary_erosion(brain, iterations=3) & (t > 45.0)
    hu[rim] = CSF_HU
    tissue = brain & (t > TISSUE_MIN_HU)
    crop = np.eye(4)
    crop[:3, 3] = lo[::-1]  # (x, y, z) index offset of the crop
    m = m @ crop
    ci = np.array(np.nonzero(intracranial)).mean(axis=1)[::-1]  # (x, y, z) crop index
    centre = (m @ np.append(ci, 1.0))[:3]
    base, neck = _skull_base_and_neck(brain, shell, m)
    return Anatomy(hu, lab, terr, tissue, shell, base, neck, m, centre)


def _skull_base_and_neck(brain: np.ndarray, shell: np.ndarray, m: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Skull-base weight (1 from 15 mm above the lowest brain down) and a simple neck below the
    foramen magnum: muscle, a subcutaneous fat ring, skin, a vertebral body and the spinal canal."""
    x, y, z = (np.arange(n, dtype=np.float32) for n in brain.shape[::-1])
    x, y, z = x[None, None, :], y[None, :, None], z[:, None, None]
    px, py, pz = (m[i, 0] * x + m[i, 1] * y + m[i, 2] * z + np.float32(m[i, 3]) for i in range(3))
    px, py, pz = (np.broadcast_to(v, brain.shape) for v in (px, py, pz))
    z_bot = float(pz[brain].min())
    low = brain & (pz < z_bot + 8.0)  # brainstem / tonsils: the foramen magnum
    xc, yc = float(px[low].mean()), float(py[low].mean())
    base = np.clip((z_bot + 30.0 - pz) / 15.0, 0.0, 1.0).astype(np.float32)
    neck = np.full(brain.shape, AIR_HU, np.float32)
    planes = np.nonzero(pz.reshape(len(pz), -1).min(axis=1) < z_bot + 20.0)[0]  # slabs below the head
    if len(planes) == 0:
        return base, neck
    sl = slice(int(planes.min()), int(planes.max()) + 1)
    px, py, pz, sub = px[sl], py[sl], pz[sl], neck[sl]
    below = (pz < z_bot + 20.0) & (shell[sl] > 0)
    r = np.sqrt(((px - xc) / 55.0) ** 2 + ((py - (yc - 8.0)) / 50.0) ** 2)
    sub[below & (r <= 1.0)] = SCALP_HU
    sub[below & (r > 0.82) & (r <= 0.94)] = FAT_HU
    body = np.hypot(px - xc, py - (yc - 14.0))  # vertebral body / dens, anterior (-y) to the canal
    canal = np.hypot(px - xc, py - (yc + 2.0))
    sub[below & (body <= 9.0)] = 1000.0
    sub[below & (body <= 7.5)] = 400.0
    sub[below & (canal <= 10.0) & (py > yc + 2.0)] = 900.0  # posterior arch
    sub[below & (canal <= 6.5)] = 12.0  # cord and CSF
    return base, neck


@functools.lru_cache(maxsize=2)
def default_anatomy(atlas_dir: Optional[str] = None) -> Anatomy:
    """Anatomy from the project atlas (``aspects.atlas.load_atlas``: ``atlas_dir``, else
    ``$ASPECTS_ATLAS_DIR``, else ``<repo>/atlas``), built once per process and folder."""
    from aspects.atlas import load_atlas

    atlas = load_atlas(Path(atlas_dir) if atlas_dir else None)  # one-line InputError if missing
    return build_anatomy(atlas.template, atlas.labels, atlas.territories)


def ventricle_mask(brain_hu: np.ndarray, intracranial: np.ndarray, min_ml: float = 2.0) -> np.ndarray:
    """Lateral (and third) ventricles: CSF-like voxels (< 15 HU after 1 mm smoothing) more than
    15 mm inside the intracranial volume, in components of at least ``min_ml``."""
    smooth = ndi.gaussian_filter(brain_hu, 1.0)
    deep = ndi.distance_transform_edt(intracranial) > 15.0
    lab, n = ndi.label(deep & (smooth < 15.0) & (smooth > -50.0))
    if n == 0:
        return np.zeros(brain_hu.shape, bool)
    sizes = np.bincount(lab.ravel())
    keep = np.flatnonzero(sizes >= min_ml * 1000.0)
    return np.isin(lab, keep[keep > 0])


@functools.lru_cache(maxsize=4)
def source_anatomy(name: str, atlas_dir: Optional[str] = None, balance: bool = True) -> Anatomy:
    """Generator-v2 anatomy ``name`` (:data:`aspects_research.phantom_anatomy.ANATOMIES`) on the crop of
    :func:`default_anatomy` (see :mod:`aspects_research.phantom_anatomy`), built once per process.
    ``balance=False``: a real head without its low-frequency hemispheric balance (for measuring it)."""
    import dataclasses

    from aspects_research import phantom_anatomy as PA
    from aspects.atlas import load_atlas
    from aspects_research.phantom_lesions import template_grid

    base = default_anatomy(atlas_dir)
    atlas = load_atlas(Path(atlas_dir) if atlas_dir else None)
    t_i2p = _index_to_phys(atlas.template)
    common = dict(name=name, phys_to_template=np.linalg.inv(t_i2p), template_grid=template_grid(atlas.template))
    intracranial = base.shell_dist <= 0
    if name == "template":
        return dataclasses.replace(base, calcify=True, ventricles=ventricle_mask(base.brain_hu, intracranial), **common)
    ref = PA.crop_reference(base.index_to_phys, base.brain_hu.shape)
    if name == "scct":
        head, brain, raw = PA.scct_head(ref)
        stretched = np.where(raw <= TEMPLATE_GM_HU, tissue_hu(raw), raw)  # real partial volume kept above
        head = np.where(brain, stretched, head)
        outside = (head <= AIR_HU + 1.0) & (base.neck_hu != AIR_HU)  # below the template's field: the neck
        head[outside] = base.neck_hu[outside]
        brain_hu = np.where(brain, head, np.where(intracranial, CSF_HU, AIR_HU)).astype(np.float32)
        tissue = brain & (raw > TISSUE_MIN_HU) & (head < 60.0)
        return dataclasses.replace(base, brain_hu=brain_hu, head=head.astype(np.float32), tissue=tissue, calcify=True,
                                   ventricles=ventricle_mask(brain_hu, intracranial), **common)
    if name not in PA.ANATOMIES:
        raise InputError(EXIT_USAGE, f"no anatomy source {name!r} ({', '.join(PA.ANATOMIES)})")
    data = PA.load_or_register(name, atlas, ref, balance=balance)
    head, brain = data["head"], data["brain"]
    spacing = np.linalg.norm(base.index_to_phys[:3, :3], axis=0)[::-1]
    sd = _signed_distance_2x(brain, spacing)
    intracranial = sd <= 0
    bb = tuple(slice(0, n) for n in head.shape)
    tidx = PA.template_index(base.index_to_phys, common["phys_to_template"], data["disp2"], bb)
    coords = [tidx[2], tidx[1], tidx[0]]
    labels = ndi.map_coordinates(sitk.GetArrayFromImage(atlas.labels), coords, order=0, mode="constant", cval=0).astype(np.uint8)
    terr = ndi.map_coordinates(sitk.GetArrayFromImage(atlas.territories), coords, order=0, mode="constant", cval=0).astype(np.uint8)
    del tidx, coords
    labels[~brain] = 0
    terr[~brain] = 0
    smooth = ndi.gaussian_filter(head, 0.7)
    tissue = brain & (smooth > TISSUE_MIN_HU) & (smooth < 50.0)
    brain_hu = np.where(brain, head, np.where(intracranial, CSF_HU, AIR_HU)).astype(np.float32)
    ci = np.array(np.nonzero(intracranial)).mean(axis=1)[::-1]
    return dataclasses.replace(
        base, brain_hu=brain_hu, labels=labels, territories=terr, tissue=tissue,
        shell_dist=np.maximum(sd, 0.0).astype(np.float32), head=head, fov=data["fov"], disp2=data["disp2"],
        ventricles=ventricle_mask(brain_hu, intracranial), native_noise_hu=float(data["noise_hu"]),
        centre=(base.index_to_phys @ np.append(ci, 1.0))[:3], calcify=False, **common)


# ----------------------------------------------------------------------------- random fields


def _bspline_matrix(n_out: int, n_ctrl: int) -> np.ndarray:
    """(n_out, n_ctrl) cubic B-spline weights of control points spread over the output axis."""
    x = np.linspace(0.0, n_ctrl - 1.0, n_out)
    i = np.floor(x).astype(int)
    t = x - i
    w = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], 1) / 6.0
    mat = np.zeros((n_out, n_ctrl))
    for k in range(4):
        np.add.at(mat, (np.arange(n_out), np.clip(i + k - 1, 0, n_ctrl - 1)), w[:, k])
    return mat


def smooth_field(rng: np.random.Generator, shape: Sequence[int], knot_vox: float) -> np.ndarray:
    """A smooth random field (unit-ish amplitude) of ``shape``: cubic B-spline of random knots."""
    ctrl = [max(4, int(math.ceil(n / knot_vox)) + 3) for n in shape]
    c = rng.standard_normal(ctrl)
    mats = [_bspline_matrix(n, k) for n, k in zip(shape, ctrl)]
    out = np.tensordot(mats[0], c, axes=(1, 0))
    out = np.tensordot(out, mats[1], axes=(1, 1))  # (n0, k2, n1)
    out = np.tensordot(out, mats[2], axes=(1, 1))  # (n0, n1, n2)
    return (out / max(float(out.std()), 1e-9)).astype(np.float32)


# ----------------------------------------------------------------------------- head + lesion


def head_hu(anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Brain plus a skull and scalp of randomly varying thickness (template crop space); the
    anatomy's own complete head when it has one (scct, real heads)."""
    if anat.head is not None:
        return anat.head.copy()
    hu = anat.brain_hu.copy()
    d = anat.shell_dist
    near = d > 0
    near &= d < 20.0
    idx = np.nonzero(near)
    f = smooth_field(rng, d.shape, 24.0)[idx]
    g = smooth_field(rng, d.shape, 24.0)[idx]
    bone_t = rng.uniform(5.0, 7.0) + 1.2 * np.clip(f, -1.5, 1.5) + 4.0 * anat.skull_base[idx]
    scalp_t = rng.uniform(4.0, 6.5) + 1.0 * np.clip(g, -1.5, 1.5)
    dv = d[idx]
    u = dv / bone_t  # 0..1 across the bone
    bone = u <= 1.0
    # Dense tables at both surfaces, cancellous diploe in between.
    prof = np.abs(2.0 * u - 1.0) ** 2
    density = rng.uniform(0.9, 1.1)
    vals = np.where(bone, density * (BONE_DIPLOE_HU + (BONE_TABLE_HU - BONE_DIPLOE_HU) * prof), AIR_HU)
    s = (dv - bone_t) / scalp_t  # 0..1 across the scalp
    scalp = (~bone) & (s <= 1.0)
    vals = np.where(scalp, np.where((s > 0.35) & (s < 0.7), FAT_HU, SCALP_HU), vals)
    hu[idx] = vals.astype(np.float32)
    neck = (hu == AIR_HU) & (anat.neck_hu != AIR_HU)
    hu[neck] = anat.neck_hu[neck]
    return hu


def _region_parts(anat: Anatomy, codes: Sequence[str], side: str, rng: np.random.Generator,
                  cover: Tuple[float, float]) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Union of a random contiguous part of each region (fraction drawn in ``cover``), in a bbox."""
    values = [label_value(side, c) for c in codes]
    sel = np.isin(anat.labels, values)
    zz, yy, xx = np.nonzero(sel)
    pad = 8
    bb = tuple(slice(max(0, a.min() - pad), b.max() + pad + 1) for a, b in zip((zz, yy, xx), (zz, yy, xx)))
    lab = anat.labels[bb]
    field_ = smooth_field(rng, lab.shape, 12.0)
    mask = np.zeros(lab.shape, bool)
    for v in values:
        reg = lab == v
        if not reg.any():
            continue
        frac = rng.uniform(*cover)
        thr = np.quantile(field_[reg], 1.0 - frac)
        mask |= reg & (field_ >= thr)
    return mask, bb


def _territory_parts(anat: Anatomy, names: Sequence[str], side: str, rng: np.random.Generator,
                     cover: Tuple[float, float]) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """A random contiguous part (fraction drawn in ``cover``) of the parenchyma of some arterial
    territories of one side, kept TERRITORY_REGION_GAP_MM away from every ASPECTS region."""
    from aspects.atlas import ARTERIAL_RIGHT

    values = [ARTERIAL_RIGHT[n] - (1 if side == "left" else 0) for n in names]
    sel = np.isin(anat.territories, values) & anat.tissue
    if not sel.any():
        raise InputError(EXIT_USAGE, f"the atlas has no {'/'.join(names)} territory (atlas v2 with territories.nii.gz needed)")
    zz, yy, xx = np.nonzero(sel)
    pad = 8
    bb = tuple(slice(max(0, a.min() - pad), b.max() + pad + 1) for a, b in zip((zz, yy, xx), (zz, yy, xx)))
    gap = int(math.ceil(TERRITORY_REGION_GAP_MM))
    reg = sel[bb] & ~ndi.binary_dilation(anat.labels[bb] > 0, iterations=gap)
    field_ = smooth_field(rng, reg.shape, 16.0)
    thr = np.quantile(field_[reg], 1.0 - rng.uniform(*cover))
    return reg & (field_ >= thr), bb


def _pattern_parts(anat: Anatomy, pattern: str, side: str, rng: np.random.Generator,
                   cover: Tuple[float, float]) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    if pattern in TERRITORY_PATTERNS:
        return _territory_parts(anat, TERRITORY_PATTERNS[pattern], side, rng, TERRITORY_COVER)
    return _region_parts(anat, PATTERNS[pattern], side, rng, cover)


def paint_lesion(hu: np.ndarray, anat: Anatomy, p: CaseParams, rng: np.random.Generator) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Add the case's lesion to ``hu`` (in place); returns its soft weight (0..1) and bbox."""
    if p.kind == "normal":
        return np.zeros((1, 1, 1), np.float32), (slice(0, 1),) * 3
    if p.kind == "leukoaraiosis":
        from aspects_research.phantom_lesions import paint_leukoaraiosis

        # The crop is symmetric about the midline and the painted box too: the mirror is a flip.
        return paint_leukoaraiosis(hu, anat, rng, p.band_mm, p.detail_hu, lambda a: a[:, :, ::-1],
                                   own_white_matter=p.leukoaraiosis == "white-matter")
    assert p.side is not None
    if p.kind == "haemorrhage":
        deep = rng.uniform() < 0.6
        codes = ("C", "L", "IC") if deep else ("M1", "M2", "M3", "M4", "M5", "M6")
        sel = np.isin(anat.labels, [label_value(p.side, c) for c in codes]) & anat.tissue
        pts = np.argwhere(sel)
        c = pts[rng.integers(len(pts))]
        radii = rng.uniform(5.0, 14.0, 3)
        pad = int(radii.max() * 1.6) + 4
        bb = tuple(slice(max(0, ci - pad), ci + pad + 1) for ci in c)
        g = np.indices(hu[bb].shape).astype(np.float32)
        start = np.array([s.start for s in bb])
        r2 = sum(((g[i] + start[i] - c[i]) / radii[i]) ** 2 for i in range(3))
        rough = 0.25 * smooth_field(rng, r2.shape, 6.0)
        core = (np.sqrt(r2) + rough) <= 1.0
        core &= anat.brain_hu[bb] > 15.0
        w = ndi.gaussian_filter(core.astype(np.float32), 0.8)
        ring = ndi.gaussian_filter(core.astype(np.float32), 3.0) - w  # perihaematomal oedema
        sub = hu[bb]
        sub -= 4.0 * np.clip(ring, 0, 1) * (anat.tissue[bb])
        sub[...] = sub * (1 - w) + w * (p.lesion_hu + 2.0 * rng.standard_normal(sub.shape).astype(np.float32))
        return w, bb
    if p.lesion_id is not None:
        from aspects_research.phantom_lesions import paint_old_infarct, soop_mask

        mask, bb = soop_mask(anat, p.lesion_id, p.lesion_mirror)
        if p.kind == "old_infarct":
            return paint_old_infarct(hu, anat, mask, bb, p.side, p.lesion_hu, p.detail_hu, p.band_mm), bb
        return _paint_acute(hu, anat, mask, bb, p, rng, p.margin_mm, p.heterogeneity)
    assert p.pattern is not None
    if p.kind == "old_infarct":
        mask, bb = _pattern_parts(anat, p.pattern, p.side, rng, (0.25, 0.6))
        mask = ndi.binary_opening(mask, iterations=1)
        w = ndi.gaussian_filter(mask.astype(np.float32), 0.5) * anat.tissue[bb]
        sub = hu[bb]
        sub[...] = sub * (1 - w) + w * p.lesion_hu
        return w, bb
    # Acute infarct: partial involvement of each region of the pattern, soft margins.
    mask, bb = _pattern_parts(anat, p.pattern, p.side, rng, (0.4, 1.0))
    return _paint_acute(hu, anat, mask, bb, p, rng, rng.uniform(1.5, 3.0), 0.0)


def _paint_acute(hu: np.ndarray, anat: Anatomy, mask: np.ndarray, bb: Tuple[slice, ...], p: CaseParams,
                 rng: np.random.Generator, margin: float, heterogeneity: float) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Acute hypoattenuation over ``mask`` (in place): soft edge of ``margin`` mm, limited to
    parenchyma, mean drop over the truth mask (weight >= 0.5) exactly ``p.hu_drop``; with
    ``heterogeneity`` > 0 the drop varies by that relative amount (a smooth field), as the
    degree of ischaemia does within a lesion."""
    w = ndi.gaussian_filter(mask.astype(np.float32), margin) * anat.tissue[bb]
    core = w >= 0.5
    if not core.any():
        return np.zeros((1, 1, 1), np.float32), (slice(0, 1),) * 3
    # Specks and strands of a real mask that the blur leaves below 0.5 everywhere would darken
    # tissue the truth never labels: keep only the soft edge connected to the core.
    edge, _ = ndi.label(w > 0.02)
    w *= np.isin(edge, np.unique(edge[core]))
    drop = w
    if heterogeneity > 0:
        drop = w * np.clip(1.0 + heterogeneity * smooth_field(rng, w.shape, 10.0), 0.3, 1.7)
    sub = hu[bb]
    if p.contrast_loss == "darken":
        sub -= acute_darkening(sub, w, drop, core, p.hu_drop)
        return w, bb
    m = float(sub[core].mean())
    # Scale the peak drop so that the mean drop over the truth mask (w >= 0.5) is hu_drop.
    peak = p.hu_drop / float(drop[core].mean())
    k = 0.5 * min(1.0, p.hu_drop / 8.0)  # grey-white contrast loss grows with the drop
    if heterogeneity > 0:
        sub -= drop * peak + w * k * (sub - m)
    else:
        sub -= w * (peak + k * (sub - m))
    return w, bb


def acute_darkening(sub: np.ndarray, w: np.ndarray, drop: np.ndarray, core: np.ndarray, hu_drop: float) -> np.ndarray:
    """HU to subtract for an acute infarct whose tissue never brightens (CONTRAST_LOSS "darken").

    ``w``: the lesion's soft weight (0..1, parenchyma only); ``drop``: its drop pattern (``w`` or
    ``w`` times a heterogeneity field); ``core``: the truth (``w >= 0.5``). Every voxel loses
    ``drop * peak``; tissue brighter than the lesion's white-matter level (the truth's lower
    quartile) loses a further ``w * k * (HU - level)``, with ``k`` growing to 0.5 at 8 HU: grey
    matter sinks towards white matter by up to half their difference, as "compress" intended,
    but nothing rises. ``peak`` is chosen so the mean loss over the truth is ``hu_drop``."""
    k = 0.5 * min(1.0, hu_drop / 8.0)
    extra = w * k * np.maximum(sub - float(np.percentile(sub[core], CONTRAST_LEVEL_PERCENTILE)), 0.0)
    peak = max(0.0, (hu_drop - float(extra[core].mean())) / float(drop[core].mean()))
    return (drop * peak + extra).astype(np.float32)


# ----------------------------------------------------------------------------- scanner geometry


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = np.radians([yaw, pitch, roll])
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    return rz @ rx @ ry


@dataclass(frozen=True)
class ScanGeometry:
    origin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    step: np.ndarray
    pixel_mm: float
    n_slices: int


def plan_scan(anat: Anatomy, p: CaseParams, to_scanner: np.ndarray, rng: np.random.Generator, margin_mm: float) -> ScanGeometry:
    """Slices covering the whole head (vertex to below the posterior fossa) in a 512^2 FOV."""
    tilt = math.radians(p.tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, math.cos(tilt), math.sin(tilt)])
    normal = np.cross(row, col)
    step = np.array([0.0, 0.0, p.thickness / math.cos(tilt)])  # table motion along z
    near = anat.shell_dist < 14.0
    if anat.fov is not None:  # a real head: only where its scan has data
        near &= anat.fov
    head = np.argwhere(near[::3, ::3, ::3])[:, ::-1] * 3.0
    pts = (to_scanner @ np.c_[head, np.ones(len(head))].T)[:3].T
    k = pts @ normal / float(step @ normal)
    u = pts @ row
    v = (pts - k[:, None] * step) @ col
    k0 = float(k.min()) - margin_mm / p.thickness
    n_slices = int(math.ceil(float(k.max()) + margin_mm / p.thickness - k0)) + 1
    extent = max(u.max() - u.min(), v.max() - v.min()) + 2 * margin_mm + 10.0
    lo_px, hi_px = (v_ * INPLANE_SIZE / p.matrix for v_ in PIXEL_RANGE_MM)  # same FOV range
    if p.pixel_mm is not None:
        pixel = p.pixel_mm
    else:
        need = min(hi_px, max(lo_px, extent / p.matrix))
        pixel = need + p.pixel_u * (hi_px - need)
    fov = pixel * p.matrix
    slack_u = max(0.0, fov - (u.max() - u.min()) - 2 * margin_mm)
    slack_v = max(0.0, fov - (v.max() - v.min()) - 2 * margin_mm)
    cu = (u.max() + u.min()) / 2 + rng.uniform(-0.3, 0.3) * slack_u
    cv = (v.max() + v.min()) / 2 + rng.uniform(-0.3, 0.3) * slack_v
    half = (p.matrix - 1) / 2 * pixel
    origin = k0 * step + (cu - half) * row + (cv - half) * col
    return ScanGeometry(origin, row, col, step, float(pixel), n_slices)


def _sub_planes(thickness: float) -> int:
    """Odd number of sub-planes (<= ~1.7 mm apart) averaged into one slice (partial volume)."""
    n = max(1, int(round(thickness / 1.6)))
    return n if n % 2 == 1 else n + 1


def make_phantom(seed: int, opts: PhantomOptions = PhantomOptions(), anat: Optional[Anatomy] = None,
                 atlas_dir: Optional[str] = None) -> Phantom:
    """Generate one case entirely in memory (deterministic for ``seed`` and ``opts``). ``anat``:
    the v1 anatomy (default: the atlas's); v2 cases use the anatomy source they draw."""
    p = resolve_params(seed, opts)
    if p.generator == "v2" and (anat is None or anat.name != p.anatomy or anat.phys_to_template is None
                                or not p.balanced):
        anat = source_anatomy(p.anatomy, atlas_dir, p.balanced)
    anat = anat if anat is not None else default_anatomy(atlas_dir)
    rngs = _child_rngs(seed)
    hu_t = head_hu(anat, rngs["skull"])
    calcifications: Dict[str, int] = {}
    if p.generator == "v2" and anat.calcify:
        from aspects_research.phantom_anatomy import paint_calcifications

        calcifications = paint_calcifications(hu_t, anat.index_to_phys, rngs["calc"])
    atrophy: Dict[str, float] = {}
    if p.atrophy > 0:
        from aspects_research.phantom_atrophy import paint_atrophy

        anat, atrophy = paint_atrophy(hu_t, anat, rngs["atrophy"], p.atrophy, CSF_HU)
    w, wbb = paint_lesion(hu_t, anat, p, rngs["lesion"])

    # Template physical -> scanner: rotate and scale about the head centre, centre at the origin.
    a = p.scale * _rotation(p.yaw_deg, p.pitch_deg, p.roll_deg)
    to_scanner_phys = np.eye(4)
    to_scanner_phys[:3, :3] = a
    to_scanner_phys[:3, 3] = -a @ anat.centre
    table = np.array([0.0, rngs["pose"].uniform(-20, 20), rngs["pose"].uniform(-250, -60)]) if opts.pose else np.zeros(3)
    to_scanner_phys[:3, 3] += table
    to_scanner = to_scanner_phys @ anat.index_to_phys  # crop index -> scanner
    geo = plan_scan(anat, p, to_scanner, rngs["pose"], margin_mm=2.0 + p.deform_mm)

    # Intermediate grid: 2x2 output pixels per sample in-plane, n_sub sub-planes per slice.
    half_n = p.matrix // 2
    n_sub = _sub_planes(p.thickness)
    kk = (np.arange(geo.n_slices)[:, None] + (np.arange(n_sub)[None, :] + 0.5) / n_sub - 0.5).ravel()
    o_int = geo.origin + 0.5 * geo.pixel_mm * (geo.row + geo.col)
    from_scanner = np.linalg.inv(to_scanner)  # scanner -> crop index (x, y, z)
    g0 = from_scanner[:3, :3] @ o_int + from_scanner[:3, 3]
    gk = from_scanner[:3, :3] @ geo.step
    gi = from_scanner[:3, :3] @ (2 * geo.pixel_mm * geo.row)
    gj = from_scanner[:3, :3] @ (2 * geo.pixel_mm * geo.col)
    ax = np.arange(half_n, dtype=np.float32)
    shape = (len(kk), half_n, half_n)
    disp = None
    vox_mm = float(np.mean(np.linalg.norm(anat.index_to_phys[:3, :3], axis=0)))
    if p.deform_mm > 0:
        step_mm = float(np.linalg.norm(geo.step)) / n_sub
        spacing = np.array([step_mm, 2 * geo.pixel_mm, 2 * geo.pixel_mm])
        knots = 25.0 / spacing  # ~25 mm between control points
        r = rngs["deform"]
        disp = []
        for _ in range(3):
            ctrl = [max(4, int(math.ceil(n / kv)) + 3) for n, kv in zip(shape, knots)]
            disp.append(r.standard_normal(ctrl) * (1.5 * p.deform_mm / vox_mm))
        mats = [_bspline_matrix(n, k) for n, k in zip(shape, disp[0].shape)]

    def coords(plane_idx: np.ndarray) -> np.ndarray:
        """Crop-index coordinates (z, y, x) of the intermediate samples of some sub-planes."""
        out = np.empty((3,) + (len(plane_idx), half_n, half_n), np.float32)
        kp = kk[plane_idx].astype(np.float32)
        for c in range(3):  # c: x, y, z of the crop index; stored as z, y, x
            v = (np.float32(g0[c]) + kp[:, None, None] * np.float32(gk[c])
                 + ax[None, :, None] * np.float32(gj[c]) + ax[None, None, :] * np.float32(gi[c]))
            if disp is not None:
                d = np.tensordot(mats[0][plane_idx], disp[c], axes=(1, 0))
                d = np.tensordot(d, mats[1], axes=(1, 1))
                d = np.tensordot(d, mats[2], axes=(1, 1))
                v += d.astype(np.float32)
            out[2 - c] = v
        return out

    # Lesion weights are sampled only on the slices its bounding box can reach (+ deformation).
    k_lo = k_hi = 0
    if w.size > 1:
        corners = np.array([[s.start, s.stop] for s in wbb[::-1]], float)  # x, y, z
        cc = np.array(np.meshgrid(*corners, indexing="ij")).reshape(3, -1)
        pts = (to_scanner @ np.vstack([cc, np.ones(cc.shape[1])]))[:3]
        n = np.cross(geo.row, geo.col)
        ks = n @ (pts - geo.origin[:, None]) / float(n @ geo.step)
        pad = 2.0 * p.deform_mm / p.thickness + 1.0
        k_lo = max(0, int(math.floor(ks.min() - pad)))
        k_hi = min(geo.n_slices, int(math.ceil(ks.max() + pad)) + 1)
    w_start = np.array([s.start for s in wbb], np.float32)[:, None, None, None]

    hu_sl = np.empty((geo.n_slices, half_n, half_n), np.float32)
    regions_half = np.empty((geo.n_slices, half_n, half_n), np.uint8)
    outside_half = 0  # acute infarct samples outside every region in a non-MCA territory
    lesion_half = np.zeros((geo.n_slices, half_n, half_n), np.float32)
    chunk = max(1, 48 // n_sub)  # slices per chunk: bounds memory for thin slices
    for k0 in range(0, geo.n_slices, chunk):
        k1 = min(geo.n_slices, k0 + chunk)
        cz = coords(np.arange(k0 * n_sub, k1 * n_sub))
        hu_int = ndi.map_coordinates(hu_t, cz, order=1, mode="constant", cval=AIR_HU, output=np.float32, prefilter=False)
        hu_sl[k0:k1] = hu_int.reshape(k1 - k0, n_sub, half_n, half_n).mean(axis=1)
        centre = cz[:, n_sub // 2::n_sub]
        regions_half[k0:k1] = ndi.map_coordinates(anat.labels, centre, order=0, mode="constant", cval=0, output=np.uint8)
        a0, a1 = max(k0, k_lo), min(k1, k_hi)
        if a1 > a0:
            sub = cz[:, (a0 - k0) * n_sub:(a1 - k0) * n_sub] - w_start
            wi = ndi.map_coordinates(w, sub, order=1, mode="constant", cval=0.0, output=np.float32, prefilter=False)
            lesion_half[a0:a1] = wi.reshape(a1 - a0, n_sub, half_n, half_n).mean(axis=1)
            if p.kind == "acute":
                terr = ndi.map_coordinates(anat.territories, centre[:, a0 - k0:a1 - k0], order=0, mode="constant",
                                           cval=0, output=np.uint8)
                outside_half += int(np.count_nonzero((lesion_half[a0:a1] >= 0.5) & (regions_half[a0:a1] == 0)
                                                     & outside_mca(terr)))
    del cz, hu_int

    up = lambda a_: np.repeat(np.repeat(a_, 2, axis=1), 2, axis=2)  # noqa: E731
    hu = np.empty((geo.n_slices, 2 * half_n, 2 * half_n), np.float32)
    # v2: scanner-like noise (measured NPS); the anatomy's own remaining noise counts towards its level.
    sigma_add = p.noise_hu
    if p.generator == "v2":
        sigma_add = math.sqrt(max(p.noise_hu ** 2 - anat.native_noise_hu ** 2, (0.5 * p.noise_hu) ** 2))
    for k0 in range(0, geo.n_slices, 16):  # in chunks: bounds the temporaries
        k1 = min(geo.n_slices, k0 + 16)
        hu[k0:k1] = upsample2(hu_sl[k0:k1])
        if p.generator == "v2":
            hu[k0:k1] += nps_noise(rngs["noise"], hu[k0:k1].shape, geo.pixel_mm, sigma_add, load_nps()[p.noise_curve])
        else:
            hu[k0:k1] += noise_field(rngs["noise"], hu[k0:k1].shape, p.noise_hu)
    lesion_mask = up(lesion_half >= 0.5).astype(np.uint8)
    regions = up(regions_half)
    infarct = lesion_mask if p.kind == "acute" else np.zeros_like(lesion_mask)
    extra = {p.kind: lesion_mask} if p.kind in ("old_infarct", "haemorrhage", "leukoaraiosis") else {}
    ph = Phantom(p, hu, infarct, regions, extra, geo.origin, geo.row, geo.col, geo.step, geo.pixel_mm,
                 outside_mca_voxels=4 * outside_half,  # each sample is 2 x 2 output pixels
                 lesion_reach=(upsample2(lesion_half) > 0).astype(np.uint8))  # as hu was upsampled
    ph.truth = truth_record(ph)
    if p.generator == "v2":
        ph.truth["calcifications"] = calcifications
        if atrophy:
            ph.truth["atrophy"] = atrophy
    return ph


def noise_field(rng: np.random.Generator, shape: Tuple[int, ...], sigma_hu: float) -> np.ndarray:
    """Slightly correlated (in-plane) Gaussian noise with standard deviation ``sigma_hu``."""
    n = rng.standard_normal(shape, dtype=np.float32)
    if sigma_hu <= 0:
        return np.zeros(shape, np.float32)
    taps = np.array([0.25, 0.5, 0.25], np.float32)  # std of white noise x 0.375 after both axes
    n = ndi.correlate1d(ndi.correlate1d(n, taps, axis=1, mode="nearest"), taps, axis=2, mode="nearest")
    n *= np.float32(sigma_hu / 0.375)
    return n


def upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear 2x in-plane upsampling of ``(z, y, x)``; sample m sits between pixels 2m, 2m+1."""
    for ax in (1, 2):
        a = np.moveaxis(a, ax, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        out = np.empty((2 * a.shape[0],) + a.shape[1:], np.float32)
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        a = np.moveaxis(out, 0, ax)
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- truth


def involved_regions(infarct: np.ndarray, regions: np.ndarray, fraction: float = INVOLVEMENT_FRACTION) -> Dict[str, List[str]]:
    """Region codes per side whose voxels are at least ``fraction`` infarct (the scorer's rule)."""
    inside = np.nonzero(regions.any(axis=(1, 2)))[0]  # crop to the labelled slices: less memory
    if len(inside):
        regions, infarct = regions[inside[0]:inside[-1] + 1], infarct[inside[0]:inside[-1] + 1]
    found = region_findings(regions, infarct, 1.0, fraction_threshold=fraction, ml_threshold=None)
    return {side: [code for code in REGION_CODES if found[side][code].involved] for side in ("left", "right")}


def truth_record(ph: Phantom) -> dict:
    """truth.json content (schema in docs/data.md)."""
    p = ph.params
    inv = involved_regions(ph.infarct, ph.regions) if p.kind == "acute" else {"left": [], "right": []}
    voxel_ml = ph.pixel_mm * ph.pixel_mm * ph.slice_spacing / 1000.0
    return {
        "kind": p.kind,
        "affected_side": p.side if p.kind == "acute" else None,
        "aspects": {"left": 10 - len(inv["left"]), "right": 10 - len(inv["right"])},
        "involved": inv,
        "infarct_volume_ml": round(float(ph.infarct.sum()) * voxel_ml, 3),
        "infarct_outside_mca_ml": round(float(ph.outside_mca_voxels) * voxel_ml, 3),
        "hu_drop": round(p.hu_drop, 3),
        "slice_thickness_mm": p.thickness,
        "seed": p.seed,
        **({} if p.generator == "v1" else {
            "generator": p.generator, "anatomy": p.anatomy, "split": p.split, "lesion_id": p.lesion_id,
            "lesion_source": "soop" if p.lesion_id is not None else ("atlas_pattern" if p.pattern else None),
            "noise_hu": round(p.noise_hu, 2), **({} if p.balanced else {"anatomy_balanced": False})}),
    }


__all__ = [
    "INVOLVEMENT_FRACTION", "KINDS", "HEAD_SIZES", "ATROPHY_MODELS", "ADULT_BRAIN_ML", "adult_scale", "PATTERNS", "TERRITORY_PATTERNS", "ALL_PATTERNS", "THICKNESSES", "PhantomOptions", "CaseParams",
    "Anatomy", "Phantom", "build_anatomy", "default_anatomy", "source_anatomy", "make_phantom", "resolve_params",
    "involved_regions", "truth_record", "noise_field", "smooth_field", "case_id_for",
]


def case_id_for(seed: int) -> str:
    """Folder name of the case generated from ``seed``."""
    return f"phantom_{seed:06d}"
