"""Acute infarcts painted into aligned training volumes, for training the infarct model on many
more lesions than there are generated studies.

A generated v2 study (``aspects-make-phantoms --generator v2``) costs ~40-60 s of CPU to make and
align, so a CPU session trains on tens of studies and the model sees each lesion shape once per
epoch. Here a real SOOP lesion shape of the *training* split of mask IDs (the same split rule as the
generator, :func:`aspects_research.phantom_lesions.split_of`) is taken onto the aligned grid once,
and at each draw painted into an aligned training volume with the v2 generator's model of early
ischaemic change (``phantoms._paint_acute``: a soft edge, a mean drop over the mask of exactly the
drawn HU, loss of grey-white contrast growing with the drop, optional heterogeneity), limited to
parenchyma. Copy-paste lesion synthesis in the spirit of CarveMix (Zhang et al. 2021), with the
lesion's HU made from the tissue it lands on rather than carried from another scan.

What the aligned volume adds that a painted lesion must respect: it is already blurred along the
scan axis by the study's slice thickness (the aligned grid is 2 mm), so the painted change is
blurred along z by the same amount (:func:`z_blur_sigma_vox`), otherwise a sharp-edged lesion on a
5 mm background would be a cue the model could learn and real scans never show.

Arrays here are in the models' layout ``(x, y, z)`` (``aspects.model_io.to_model_layout``): x is
the left-right axis the aligned grid is symmetric about.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

log = logging.getLogger(__name__)

# Parenchyma on the aligned 2 mm volume: grey ~40 HU, white ~30 HU; CSF < 15, calcification and
# blood > 55. Judged on a lightly smoothed copy (scanner noise is 3-14 HU per voxel).
TISSUE_HU = (18.0, 52.0)
ALIGNED_MM = 2.0
# The drop's mixture: early change (2-4 HU) well represented, as in the v2 generator's.
DROP_MIXTURE: Tuple[Tuple[float, float, float], ...] = ((0.1, 1.0, 2.0), (0.45, 2.0, 4.0), (0.45, 4.0, 12.0))
THICKNESSES = (0.625, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Lesion:
    """A lesion shape on the aligned grid: a bool crop and where it sits, ``(x, y, z)``."""

    mask_id: str
    crop: np.ndarray
    offset: Tuple[int, int, int]

    def full(self, shape: Sequence[int]) -> np.ndarray:
        out = np.zeros(tuple(shape), bool)
        sl = tuple(slice(o, o + n) for o, n in zip(self.offset, self.crop.shape))
        out[sl] = self.crop
        return out


def z_blur_sigma_vox(slice_mm: float, aligned_mm: float = ALIGNED_MM) -> float:
    """Gaussian sigma (aligned voxels, along z) that a slice of ``slice_mm`` leaves on the aligned
    grid beyond the grid's own resolution: a slice profile of FWHM ``slice_mm`` against the 2 mm
    anti-aliasing the app already applies (``aspects.preprocess._antialias``)."""
    extra = max(0.0, float(slice_mm) ** 2 - aligned_mm ** 2)
    return math.sqrt(extra) / (2.0 * math.sqrt(2.0 * math.log(2.0))) / aligned_mm


def draw_drop(rng: np.random.Generator, mixture: Sequence[Tuple[float, float, float]] = DROP_MIXTURE) -> float:
    """An HU drop from the mixture ``((weight, lo, hi), ...)``."""
    w = np.array([m[0] for m in mixture], float)
    i = int(rng.choice(len(mixture), p=w / w.sum()))
    return float(rng.uniform(mixture[i][1], mixture[i][2]))


def parenchyma(hu: np.ndarray) -> np.ndarray:
    """Bool: voxels of brain parenchyma (not CSF, bone, calcification, blood) of an aligned HU crop."""
    sm = ndi.gaussian_filter(hu.astype(np.float32), 0.7)
    return (sm > TISSUE_HU[0]) & (sm < TISSUE_HU[1])


def paint(hu: np.ndarray, lesion: np.ndarray, drop_hu: float, rng: np.random.Generator, margin_vox: float = 0.5,
          heterogeneity: float = 0.0, z_sigma_vox: float = 0.0, contrast_loss: str = "darken") -> Tuple[np.ndarray, np.ndarray]:
    """``(painted HU, truth)``: acute hypoattenuation over ``lesion`` in the aligned HU volume ``hu``
    (``(x, y, z)``, not changed). The mean drop over the truth (soft weight >= 0.5, parenchyma
    only) is ``drop_hu`` before the z blur; grey-white contrast falls by up to half with the drop
    (``phantoms._paint_acute``; ``contrast_loss`` as ``phantoms.CONTRAST_LOSS``: "darken" never
    brightens tissue, "compress" is the generator's physics before session 26). Empty truth when
    the lesion lands on no parenchyma."""
    out = np.array(hu, dtype=np.float32, copy=True)
    truth = np.zeros(hu.shape, bool)
    nz = np.argwhere(lesion)
    if nz.size == 0:
        return out, truth
    pad = int(math.ceil(3 * max(margin_vox, z_sigma_vox))) + 2
    lo = np.maximum(nz.min(0) - pad, 0)
    hi = np.minimum(nz.max(0) + pad + 1, hu.shape)
    bb = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    sub = out[bb]
    w = ndi.gaussian_filter(lesion[bb].astype(np.float32), margin_vox) * parenchyma(sub)
    core = w >= 0.5
    if not core.any():
        return out, truth
    drop = w
    if heterogeneity > 0:
        from aspects_research.phantoms import smooth_field

        field = smooth_field(rng, w.shape, 5.0)  # knots 10 mm apart, as the generator's
        drop = w * np.clip(1.0 + heterogeneity * field, 0.3, 1.7)
    if contrast_loss == "darken":
        from aspects_research.phantoms import acute_darkening

        delta = acute_darkening(sub, w, drop, core, drop_hu)
    else:
        peak = drop_hu / float(drop[core].mean())
        k = 0.5 * min(1.0, drop_hu / 8.0)
        delta = drop * peak + w * k * (sub - float(sub[core].mean()))
    if z_sigma_vox > 0.05:
        delta = ndi.gaussian_filter1d(delta, z_sigma_vox, axis=2, mode="constant")
    sub -= delta * (sub > 0)  # never into the skull-stripped background
    truth[bb] = core
    return out, truth


def side_of(mask: np.ndarray) -> int:
    """-1 / +1: the half of the x axis holding most of ``mask`` (0 when empty)."""
    n = mask.shape[0]
    counts = mask.sum(axis=(1, 2))
    low, high = counts[: n // 2].sum(), counts[n - n // 2:].sum()
    return 0 if low == high == 0 else (1 if high > low else -1)


def lesion_bank(split: str = "train", groups: Sequence[str] = ("mca",), limit: Optional[int] = None,
                atlas_dir: Optional[str] = None, cache: Optional[Path] = None) -> List[Lesion]:
    """The SOOP lesion shapes of one split of mask IDs on the aligned grid (linear resample of the
    1 mm template-grid mask, >= 0.5), in index order; ``limit`` keeps every n-th one so the bank
    spans the index. ``cache`` (an ``.npz``) is read when it exists and written otherwise."""
    if cache is not None and Path(cache).is_file():
        data = np.load(cache, allow_pickle=False)
        ids = [str(v) for v in data["ids"]]
        return [Lesion(i, np.unpackbits(data[f"m{i}"], count=int(np.prod(data[f"s{i}"]))).reshape(data[f"s{i}"]).astype(bool),
                       tuple(int(v) for v in data[f"o{i}"])) for i in ids]
    from aspects.atlas import load_atlas
    from aspects.model_io import to_model_layout
    from aspects.preprocess import aligned_grid
    from aspects_research import phantom_lesions as PL

    atlas = load_atlas(Path(atlas_dir) if atlas_dir else None)
    grid = PL.template_grid(atlas.template)
    ref = aligned_grid(atlas.template)
    rows = [r for g in groups for r in PL.pool(split, g)]
    rows.sort(key=lambda r: int(r.mask_id))
    if limit is not None and len(rows) > limit:
        step = len(rows) / float(limit)
        rows = [rows[int(i * step)] for i in range(limit)]
    bank: List[Lesion] = []
    for n, r in enumerate(rows):
        m = PL.mask_on_template(r.mask_id, grid).astype(np.float32)
        img = sitk.GetImageFromArray(m)
        img.CopyInformation(atlas.template)
        on = sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)) >= 0.5
        on = to_model_layout(on)
        nz = np.argwhere(on)
        if nz.size == 0:
            continue
        lo, hi = nz.min(0), nz.max(0) + 1
        bank.append(Lesion(r.mask_id, on[tuple(slice(a, b) for a, b in zip(lo, hi))].copy(), tuple(int(v) for v in lo)))
        if (n + 1) % 50 == 0:
            log.info("lesion bank: %d of %d shapes on the aligned grid", n + 1, len(rows))
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        arrays = {"ids": np.array([b.mask_id for b in bank])}
        for b in bank:
            arrays[f"m{b.mask_id}"] = np.packbits(b.crop.ravel())
            arrays[f"s{b.mask_id}"] = np.array(b.crop.shape)
            arrays[f"o{b.mask_id}"] = np.array(b.offset)
        np.savez_compressed(cache, **arrays)
    log.info("lesion bank: %d shapes (split %s, groups %s)", len(bank), split, ",".join(groups))
    return bank


def synthesise(hu: np.ndarray, label: np.ndarray, bank: Sequence[Lesion], rng: np.random.Generator,
               slice_mm: Optional[float] = None, contrast_loss: str = "darken") -> Tuple[np.ndarray, np.ndarray, dict]:
    """One draw: a lesion of ``bank`` painted into the aligned study ``hu`` (``(x, y, z)``) on the
    hemisphere of its own infarct (``label``) if it has one, else on a random side; returns the
    painted volume, the union of the truths, and what was drawn. ``slice_mm`` is the study's slice
    thickness (drawn when unknown)."""
    les = bank[int(rng.integers(len(bank)))]
    mask = les.full(hu.shape)
    want = side_of(label) or (1 if rng.uniform() < 0.5 else -1)
    if side_of(mask) != want:
        mask = mask[::-1]
    drop = draw_drop(rng)
    th = float(slice_mm) if slice_mm else float(rng.choice(THICKNESSES))
    het, margin = float(rng.uniform(0.0, 0.35)), float(rng.uniform(0.35, 0.75))
    painted, truth = paint(hu, mask, drop, rng, margin_vox=margin, heterogeneity=het, z_sigma_vox=z_blur_sigma_vox(th),
                            contrast_loss=contrast_loss)
    info = {"mask_id": les.mask_id, "drop_hu": drop, "slice_mm": th, "ml": float(truth.sum()) * ALIGNED_MM ** 3 / 1000.0}
    return painted, (np.asarray(label) > 0) | truth, info
