"""Synthetic heads for the preprocessing / segmenter tests, built from the atlas template.

A head = template brain + thin CSF rim + 6 mm skull (1000 HU) + 4 mm scalp (40 HU) in air, moved
by a known rigid transform and sampled on an axial CT-like grid (0.9 x 0.9 x 5 mm by default)
with seeded Gaussian noise. An optional hypodense lesion (a ball in template space, restricted
to parenchyma) gives a known infarct on the aligned grid.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.atlas import Atlas, load_atlas
from aspects.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SHARED_TEMPLATE = ROOT.parent / "shared" / "data" / "templates" / "miplab_ncct_sym" / "ncct_sym_brain_1mm.nii.gz"
# A lesion centre in the right lentiform / insula region, as a (physical - template centre) offset:
# LPS x < 0 is the patient's right.
LESION_OFFSET_MM = (-28.0, 8.0, 4.0)
LESION_RADIUS_MM = 16.0


@lru_cache(maxsize=1)
def atlas() -> Atlas:
    """The project atlas when built, else the shared template with an empty label map."""
    try:
        return load_atlas()
    except InputError:
        template = sitk.ReadImage(str(SHARED_TEMPLATE), sitk.sitkFloat32)
        labels = sitk.Image(template.GetSize(), sitk.sitkUInt8)
        labels.CopyInformation(template)
        return Atlas(template=template, labels=labels, territories=labels, levels={}, path=SHARED_TEMPLATE.parent)


def template_centre(template: sitk.Image) -> np.ndarray:
    size = np.asarray(template.GetSize(), dtype=float)
    arr = sitk.GetArrayViewFromImage(template)
    nz = np.argwhere(arr > 0)
    mid = (nz.min(axis=0) + nz.max(axis=0)) / 2.0
    mid[2] = (size[0] - 1) / 2.0  # x on the symmetry plane
    return np.asarray(template.TransformContinuousIndexToPhysicalPoint([float(v) for v in mid[::-1]]))


def lesion_mask(template: sitk.Image, offset_mm=LESION_OFFSET_MM, radius_mm=LESION_RADIUS_MM) -> np.ndarray:
    """Boolean (z, y, x) lesion on the template grid: a ball inside parenchyma (> 20 HU)."""
    arr = sitk.GetArrayFromImage(template)
    centre = template_centre(template) + np.asarray(offset_mm)
    idx = np.asarray(template.TransformPhysicalPointToContinuousIndex([float(v) for v in centre]))[::-1]
    sp = np.asarray(template.GetSpacing())[::-1]
    zz, yy, xx = np.ogrid[: arr.shape[0], : arr.shape[1], : arr.shape[2]]
    d2 = ((zz - idx[0]) * sp[0]) ** 2 + ((yy - idx[1]) * sp[1]) ** 2 + ((xx - idx[2]) * sp[2]) ** 2
    return (d2 <= radius_mm**2) & (arr > 20)


@lru_cache(maxsize=4)
def _head_1mm(hu_drop: float, mirrored: bool) -> sitk.Image:
    template = atlas().template
    arr = sitk.GetArrayFromImage(template).astype(np.float32)
    if hu_drop:
        arr[lesion_mask(template)] -= hu_drop
    brain = ndi.binary_fill_holes(arr > 0.5)
    # distance outside the brain at 2 mm resolution is plenty for 2-12 mm shells
    dist = ndi.distance_transform_edt(~brain[::2, ::2, ::2]) * 2.0
    dist = ndi.zoom(dist, 2, order=1)[: arr.shape[0], : arr.shape[1], : arr.shape[2]]
    head = np.full(arr.shape, -1000.0, np.float32)
    head[dist <= 12] = 40.0
    head[dist <= 8] = 1000.0
    head[dist <= 2] = 8.0
    head[brain] = arr[brain]
    if mirrored:
        head = head[:, :, ::-1]
    img = sitk.GetImageFromArray(np.ascontiguousarray(head))
    img.CopyInformation(template)
    return img


def rigid(angles_deg: Tuple[float, float, float], shift_mm: Tuple[float, float, float]) -> sitk.Euler3DTransform:
    """Rigid motion about the template centre (maps CT-grid points to template points)."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in template_centre(atlas().template)])
    tx.SetRotation(*[float(np.radians(a)) for a in angles_deg])
    tx.SetTranslation([float(v) for v in shift_mm])
    return tx


def synthetic_head(angles_deg=(8.0, 0.0, 12.0), shift_mm=(6.0, -10.0, 5.0), spacing=(0.9, 0.9, 5.0),
                   size=(256, 256, 44), hu_drop: float = 0.0, mirrored: bool = False, noise_hu: float = 3.0,
                   seed: int = 0) -> Tuple[sitk.Image, sitk.Euler3DTransform]:
    """(CT volume, transform mapping its points to template points)."""
    head = _head_1mm(float(hu_drop), bool(mirrored))
    tx = rigid(angles_deg, shift_mm)
    # slab averaging of a thick slice before sampling it
    slab = sitk.DiscreteGaussian(head, [0.1, 0.1, (spacing[2] / 2.355) ** 2], 32, 0.01, True)
    centre = template_centre(atlas().template) - np.asarray(shift_mm)
    origin = centre - (np.asarray(size) - 1) / 2.0 * np.asarray(spacing)
    ref = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin([float(v) for v in origin])
    ct = sitk.Resample(slab, ref, tx, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    if noise_hu:
        rng = np.random.default_rng(seed)
        a = sitk.GetArrayFromImage(ct)
        a += rng.normal(0.0, noise_hu, a.shape).astype(np.float32)
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(ct)
        ct = out
    return ct, tx


def lesion_on_aligned(ref: sitk.Image) -> np.ndarray:
    """The fixture lesion (template space) on the aligned grid ``ref``, boolean (z, y, x)."""
    template = atlas().template
    les = sitk.GetImageFromArray(lesion_mask(template).astype(np.uint8))
    les.CopyInformation(template)
    return sitk.GetArrayFromImage(sitk.Resample(les, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0


@lru_cache(maxsize=4)
def preprocessed(hu_drop: float = 0.0, mirrored: bool = False):
    """(Preprocessed, CT, rigid transform) of :func:`synthetic_head`, computed once per session."""
    from aspects.preprocess import preprocess

    ct, tx = synthetic_head(hu_drop=hu_drop, mirrored=mirrored)
    return preprocess(ct, atlas()), ct, tx


def atlas_labels_on(ref: sitk.Image) -> np.ndarray:
    """The atlas label map on grid ``ref`` (nearest neighbour), uint8 (z, y, x)."""
    lab = atlas().labels
    return sitk.GetArrayFromImage(sitk.Resample(lab, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / s) if s else 1.0
