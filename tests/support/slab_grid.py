"""A synthetic series grid for the source-slice tests (aspects.source_cavity, aspects.source_blood):
voxel centres from half a step, x symmetric about the middle of ``extent_mm``."""

from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk


def grid(step_xy: float, step_z: float, extent_mm: Sequence[float]) -> sitk.Image:
    """An empty float image of ``extent_mm`` (x, y, z) with these steps."""
    size = [int(extent_mm[0] / step_xy), int(extent_mm[1] / step_xy), int(extent_mm[2] / step_z)]
    img = sitk.Image(size, sitk.sitkFloat32)
    img.SetSpacing((step_xy, step_xy, step_z))
    img.SetOrigin((step_xy / 2, step_xy / 2, step_z / 2))
    return img


def coords(img: sitk.Image) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical z, y, x (mm) of every voxel, as (z, y, x) arrays."""
    nx, ny, nz = img.GetSize()
    sx, sy, sz = img.GetSpacing()
    ox, oy, oz = img.GetOrigin()
    z, y, x = np.meshgrid(oz + sz * np.arange(nz), oy + sy * np.arange(ny), ox + sx * np.arange(nx), indexing="ij")
    return z, y, x


def registered_study(source_hu: np.ndarray, source_grid: sitk.Image, aligned_grid: sitk.Image,
                     blur_mm: Sequence[float], brain: np.ndarray):
    """A Preprocessed whose aligned space is the source's physical space (identity transforms, as
    after a perfect registration): the aligned image is the source blurred by ``blur_mm`` (x, y, z
    Gaussian sigmas: the grid's anti-aliasing and the slab's partial volume) and resampled onto
    ``aligned_grid``; ``brain``: the aligned brain mask ((z, y, x) bool)."""
    from aspects.preprocess import Preprocessed

    source = sitk.GetImageFromArray(source_hu)
    source.CopyInformation(source_grid)
    aligned = sitk.Resample(sitk.SmoothingRecursiveGaussian(source, list(blur_mm)), aligned_grid, sitk.Transform(),
                            sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(aligned_grid)
    identity = sitk.AffineTransform(3)
    return Preprocessed(source=source, aligned=aligned, brain_mask=mask, template=aligned,
                        aligned_to_source=identity, source_to_aligned=identity)
