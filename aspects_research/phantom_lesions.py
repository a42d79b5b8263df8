"""Real infarct shapes for the synthetic studies: the 1449 SOOP acute stroke lesion masks.

The masks (Absher et al. 2024, Sci Data 11:839; OpenNeuro ds004889, CC0; the MNI masks of
neurolabusc/StrokeOutcomeOptimizationProjectDemo, BSD-2-Clause) were drawn on DWI and normalised
to MNI space with SPM12 + Clinical toolbox; they live in ``<real data>/soop_lesions_mni/masks``.
The atlas template is on the scct MNI grid (docs/atlas.md): 1 mm voxels whose centres coincide
with the masks', x and y negated (LPS). :func:`onto_grid` places a mask on the template grid by
index arithmetic alone (no interpolation).

Which masks are MCA infarcts (acute cases), which lie outside the MCA territory (negative
controls) and which split each mask belongs to are in ``aspects_research/phantom_assets/soop_index.csv``
(built once by ``tools/soop_index.py``; only that small table is committed, the masks are read
from the shared data folder). The split is a function of the mask ID alone (:func:`split_of`),
so a lesion shape is never in two splits.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.errors import EXIT_USAGE, InputError

ASSETS = Path(__file__).resolve().parent / "phantom_assets"
INDEX_FILE = ASSETS / "soop_index.csv"
REAL_DATA_ENV = "ASPECTS_REAL_DATA"
SPLITS: Tuple[str, ...] = ("train", "val", "test")
# Split by mask ID: bucket = sha256("aspects-soop-split:" + ID) mod 100; < 70 train, < 85 val, else
# test. A fixed hash (no seed to carry around): adding masks never moves an existing one.
SPLIT_SALT = "aspects-soop-split:"
SPLIT_BOUNDS = (70, 85)
# Lesion groups of the index (tools/soop_index.py says how each is decided).
GROUPS: Tuple[str, ...] = ("mca", "non_mca", "mixed", "tiny")


def default_real_data() -> Path:
    """``$ASPECTS_REAL_DATA`` or ``<repo>/../shared/data/real``."""
    env = os.environ.get(REAL_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def split_of(mask_id: str) -> str:
    """train / val / test of a SOOP mask ID (e.g. ``"1000"``), a fixed function of the ID."""
    bucket = int(hashlib.sha256((SPLIT_SALT + str(mask_id)).encode()).hexdigest(), 16) % 100
    return "train" if bucket < SPLIT_BOUNDS[0] else ("val" if bucket < SPLIT_BOUNDS[1] else "test")


def mask_id_of(path: Path) -> str:
    """``bwsrsub-1000_lesion.nii.gz`` -> ``"1000"``."""
    name = Path(path).name
    return name.split("sub-", 1)[1].split("_", 1)[0]


def mask_path(mask_id: str, real_data: Optional[Path] = None) -> Path:
    root = Path(real_data) if real_data else default_real_data()
    path = root / "soop_lesions_mni" / "masks" / f"bwsrsub-{mask_id}_lesion.nii.gz"
    if not path.is_file():
        raise InputError(EXIT_USAGE, f"SOOP lesion mask {path} not found (set ${REAL_DATA_ENV} to the shared real-data folder)")
    return path


def onto_grid(img: sitk.Image, ref: sitk.Image) -> np.ndarray:
    """``img`` on ``ref``'s grid as a (z, y, x) array (0 outside ``img``). Nearest neighbour with
    the identity transform: exact (a copy of voxel values) because the voxel centres coincide,
    which is checked; anything else is a ValueError."""
    centre = np.array(ref.TransformPhysicalPointToContinuousIndex(img.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 0.0))))
    if not (np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4) and np.allclose(centre, np.round(centre), atol=1e-3)):
        raise ValueError(f"grids are not voxel-aligned (spacing {img.GetSpacing()} vs {ref.GetSpacing()}, offset {centre})")
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
    return sitk.GetArrayFromImage(out)


@dataclass(frozen=True)
class LesionEntry:
    """One row of the index (see tools/soop_index.py for the definitions)."""

    mask_id: str
    split: str
    group: str
    volume_ml: float
    mca_ml: float
    outside_mca_ml: float
    side: str  # "left" / "right": the hemisphere with more of the lesion
    involved: str  # regions >= 10 % covered in template space, e.g. "left:M2 M3"


@functools.lru_cache(maxsize=1)
def load_index(path: Optional[str] = None) -> Tuple[LesionEntry, ...]:
    p = Path(path) if path else INDEX_FILE
    if not p.is_file():
        raise InputError(EXIT_USAGE, f"lesion index {p} missing (python -m aspects_research.tools.soop_index)")
    with open(p, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    return tuple(LesionEntry(r["mask_id"], r["split"], r["group"], float(r["volume_ml"]), float(r["mca_ml"]),
                             float(r["outside_mca_ml"]), r["side"], r["involved"]) for r in rows)


def pool(split: str, group: str, index: Optional[Tuple[LesionEntry, ...]] = None) -> List[LesionEntry]:
    """Masks of one split and group, in index order (sorted by numeric ID)."""
    if split not in SPLITS:
        raise InputError(EXIT_USAGE, f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    rows = index if index is not None else load_index()
    return [r for r in rows if r.split == split and r.group == group]


def entry(mask_id: str) -> LesionEntry:
    for r in load_index():
        if r.mask_id == str(mask_id):
            return r
    raise InputError(EXIT_USAGE, f"SOOP mask {mask_id!r} is not in the lesion index")


@functools.lru_cache(maxsize=8)
def mask_on_template(mask_id: str, grid: tuple, real_data: Optional[str] = None) -> np.ndarray:
    """The mask as a bool (z, y, x) array on the template grid ``grid`` = (size, origin, spacing,
    direction) of the atlas template (see :func:`template_grid`)."""
    size, origin, spacing, direction = grid
    ref = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    ref.SetOrigin(origin)
    ref.SetSpacing(spacing)
    ref.SetDirection(direction)
    return onto_grid(sitk.ReadImage(str(mask_path(mask_id, Path(real_data) if real_data else None))), ref) > 0


def template_grid(img: sitk.Image) -> tuple:
    """Hashable geometry of an image, for :func:`mask_on_template`."""
    return (tuple(img.GetSize()), tuple(img.GetOrigin()), tuple(img.GetSpacing()), tuple(img.GetDirection()))


# ----------------------------------------------------------------------------- painting (anatomy crop space)
# ``anat`` below is an :class:`aspects_research.phantoms.Anatomy` (duck-typed: no import cycle).


def _smooth_field(rng: np.random.Generator, shape, knot_vox: float) -> np.ndarray:
    from aspects_research.phantoms import smooth_field

    return smooth_field(rng, shape, knot_vox)


def soop_mask(anat, mask_id: str, mirror: bool, pad: int = 8) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """A SOOP lesion on the anatomy's crop grid: (bool mask, bounding box). ``mirror`` flips it to
    the other hemisphere (the template grid is symmetric about its central column)."""
    m_t = mask_on_template(str(mask_id), anat.template_grid)
    if mirror:
        m_t = m_t[:, :, ::-1]
    nz = np.argwhere(m_t)
    if nz.size == 0:
        raise InputError(EXIT_USAGE, f"SOOP mask {mask_id} lies outside the template grid")
    to_crop = np.linalg.inv(anat.phys_to_template @ anat.index_to_phys)  # template index -> crop index
    lo, hi = nz.min(0)[::-1], nz.max(0)[::-1]  # (x, y, z)
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]).T
    cc = (to_crop @ corners)[:3]
    margin = pad + (12 if anat.disp2 is not None else 0)
    shape = anat.labels.shape
    bb = tuple(slice(max(0, int(np.floor(cc[2 - a].min())) - margin), min(shape[a], int(np.ceil(cc[2 - a].max())) + margin + 1))
               for a in range(3))
    from aspects_research.phantom_anatomy import template_index

    tidx = template_index(anat.index_to_phys, anat.phys_to_template, anat.disp2, bb)
    m = ndi.map_coordinates(m_t.astype(np.float32), [tidx[2], tidx[1], tidx[0]], order=1, mode="constant", cval=0.0) >= 0.5
    return m, bb


def side_of_crop(anat, side: str, bb: Tuple[slice, ...]) -> np.ndarray:
    """Bool (1, 1, x) of the crop columns in ``bb`` on the patient's ``side`` (LPS: left = x > 0)."""
    x = anat.index_to_phys[0, 0] * np.arange(bb[2].start, bb[2].stop) + anat.index_to_phys[0, 3]
    return ((x > 0) if side == "left" else (x < 0))[None, None, :]


def paint_old_infarct(hu: np.ndarray, anat, mask: np.ndarray, bb: Tuple[slice, ...], side: str, core_hu: float,
                      gliosis_hu: float, ex_vacuo_mm: float) -> np.ndarray:
    """Chronic infarct from a lesion shape, in place: a CSF-like core (the lesion shrunk by 1 mm:
    tissue loss), a 1-2 mm gliotic rim ``gliosis_hu`` darker than tissue, and ex-vacuo change, the
    ipsilateral lateral ventricle widened by ``ex_vacuo_mm`` and the sulci over the lesion opened
    (CSF in the outer 2 mm of cortex within 6 mm of it). Returns the old lesion's weight (0..1)."""
    tissue = anat.tissue[bb]
    core = ndi.binary_erosion(mask, iterations=1) & tissue
    if not core.any():
        core = mask & tissue
    w = ndi.gaussian_filter(core.astype(np.float32), 0.5) * (tissue | core)
    ring = np.clip(ndi.gaussian_filter(core.astype(np.float32), 1.5) - w, 0.0, 1.0) * tissue
    sub = hu[bb]
    sub -= gliosis_hu * np.clip(2.0 * ring, 0.0, 1.0)
    sub[...] = sub * (1 - w) + w * core_hu
    from aspects_research.phantoms import CSF_HU

    near = ndi.binary_dilation(core, iterations=6)
    cortex = tissue & ~ndi.binary_erosion(anat.brain_hu[bb] > 0, iterations=2)
    sulci = ndi.gaussian_filter((near & cortex).astype(np.float32), 0.7)
    sub[...] = sub * (1 - sulci) + sulci * CSF_HU
    if ex_vacuo_mm > 0 and anat.ventricles is not None:
        full_bb = tuple(slice(0, n) for n in anat.ventricles.shape)
        vent = anat.ventricles & side_of_crop(anat, side, full_bb)
        if vent.any():
            zz, yy, xx = np.nonzero(vent)
            pad = int(np.ceil(ex_vacuo_mm)) + 3
            vb = tuple(slice(max(0, int(a.min()) - pad), int(a.max()) + pad + 1) for a in (zz, yy, xx))
            grow = ndi.distance_transform_edt(~vent[vb]) <= ex_vacuo_mm
            grow &= anat.brain_hu[vb] > 0
            g = ndi.gaussian_filter(grow.astype(np.float32), 0.6)
            hv = hu[vb]
            hv[...] = hv * (1 - g) + g * CSF_HU
    return w


# The templates' grey-white midpoint: their white matter is below it (leukoaraiosis's tissue).
LEUKO_WM_HU = 33.0


def grey_white_midpoint(tissue_hu: np.ndarray) -> float:
    """Halfway between the lower and upper quartile of a head's tissue HU: white matter (about half
    the parenchyma) sits below it, grey matter above. The templates: 33-34 HU; the real heads,
    whose grey-white contrast is lower: the InVesalius head ~24, the GE head ~31."""
    q1, q3 = np.percentile(tissue_hu, [25.0, 75.0])
    return float(q1 + q3) / 2.0


def paint_leukoaraiosis(hu: np.ndarray, anat, rng: np.random.Generator, band_mm: float, drop_hu: float,
                        mirror_x, own_white_matter: bool = True) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Leukoaraiosis (small-vessel white-matter disease), in place: white matter within a band
    of ``band_mm`` (modulated +-35 % by a smooth field) around the lateral ventricles, thicker at
    the frontal and occipital caps, plus patchy deep white-matter lesions, ``drop_hu`` darker.
    The pattern is symmetric about the mid-sagittal plane with a 20 % asymmetric part
    (``mirror_x(arr)`` mirrors a crop array), as small-vessel disease is. ``own_white_matter``:
    "white matter" is tissue below the head's own grey-white midpoint (:func:`grey_white_midpoint`,
    at most LEUKO_WM_HU, the templates'), so that the disease stays off the cortex of a head with
    a lower grey-white contrast than the templates' (the InVesalius head: 96 % of its tissue below
    33 HU); False: tissue below LEUKO_WM_HU on every head, the generator before session 38, which
    the archived sets were made with. Returns (weight, bbox)."""
    vent = anat.ventricles
    if vent is None or not vent.any():
        return np.zeros((1, 1, 1), np.float32), (slice(0, 1),) * 3
    nz = np.argwhere(vent)
    pad = int(band_mm * 1.5) + 30
    nx = vent.shape[2]
    x0 = max(0, min(int(nz[:, 2].min()) - pad, nx - 1 - (int(nz[:, 2].max()) + pad)))
    bb = (slice(max(0, int(nz[:, 0].min()) - pad), int(nz[:, 0].max()) + pad + 1),
          slice(max(0, int(nz[:, 1].min()) - pad), int(nz[:, 1].max()) + pad + 1), slice(x0, nx - x0))
    v = vent[bb]
    dist = ndi.distance_transform_edt(~v)
    f = _smooth_field(rng, v.shape, 10.0)
    g = _smooth_field(rng, v.shape, 6.0)
    a = _smooth_field(rng, v.shape, 10.0)
    f_sym = 0.8 * (f + mirror_x(f)) / 2.0 + 0.2 * a
    g_sym = 0.8 * (g + mirror_x(g)) / 2.0 + 0.2 * a
    y = np.arange(v.shape[1], dtype=np.float32)[None, :, None]
    yc = float(nz[:, 1].mean()) - bb[1].start
    caps = 1.0 + 0.5 * np.clip(np.abs(y - yc) / 35.0, 0.0, 1.0)  # frontal and occipital caps
    wm_hu = min(LEUKO_WM_HU, grey_white_midpoint(anat.brain_hu[anat.tissue])) if own_white_matter else LEUKO_WM_HU
    wm = anat.tissue[bb] & (anat.brain_hu[bb] < wm_hu)
    mask = wm & (dist <= band_mm * caps * (1.0 + 0.35 * np.clip(f_sym, -1.5, 1.5)))
    deep = wm & (dist < 30.0)
    if deep.any():
        mask |= deep & (g_sym > np.quantile(g_sym[deep], 1.0 - 0.006 * band_mm))
    mask = ndi.binary_opening(mask) & ~v
    w = ndi.gaussian_filter(mask.astype(np.float32), 1.2) * anat.tissue[bb]
    hu[bb] -= drop_hu * w
    return w, bb
