"""ASPECTS regions by deformable registration of the atlas (the fallback without a region model).

The patient is already affine-aligned to the atlas template (``aspects.preprocess``), so SyN
starts from the identity: the template (on the aligned grid) is warped onto the patient's
aligned image at 4 then 2 mm with a short schedule and a fixed seed, and the atlas labels follow
with ``genericLabel`` interpolation. This is how the seed papers made their region labels.
Labels are kept inside the patient's brain mask.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from aspects.registration import syn_warp

# Intensity window for the deformable match: CSF (0) to grey matter/blood; bone is gone.
SYN_WINDOW = (0.0, 80.0)


def _windowed(img: sitk.Image) -> sitk.Image:
    return sitk.Clamp(sitk.Cast(img, sitk.sitkFloat32), sitk.sitkFloat32, *SYN_WINDOW)


def atlas_regions(pre, atlas) -> sitk.Image:
    """uint8 ASPECTS labels (``aspects.labels``) on the aligned grid of ``pre``."""
    (warped,) = syn_warp(_windowed(pre.aligned), _windowed(pre.template), [atlas.labels], [True])
    arr = sitk.GetArrayFromImage(warped)
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(pre.aligned)
    return out
