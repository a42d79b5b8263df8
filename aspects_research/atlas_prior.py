"""The atlas on the template-aligned grid: the prior the region network deforms.

The aligned grid of ``aspects.preprocess`` is the atlas template's own space at 2 mm, so the atlas
labels resampled onto it are what an affine-only registration would report; the network learns
the residual, non-linear part. Both arrays come from the app's own code (``aligned_grid``,
``template_on_aligned``) and are returned in the model layout ``(X, Y, Z)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from aspects.atlas import load_atlas
from aspects.model_io import normalise, to_model_layout
from aspects.preprocess import aligned_grid, template_on_aligned


def aligned_prior(atlas_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 atlas labels, float32 normalised template), both ``(X, Y, Z)`` on the aligned grid.

    Labels use label-wise Gaussian interpolation from the 1 mm atlas (smooth borders, no new
    values); the template is the one registration uses, normalised like model inputs.
    """
    atlas = load_atlas(Path(atlas_dir) if atlas_dir else None)
    ref = aligned_grid(atlas.template)
    labels = sitk.Resample(atlas.labels, ref, sitk.Transform(), sitk.sitkLabelGaussian, 0, sitk.sitkUInt8)
    template = template_on_aligned(atlas.template)
    lab = to_model_layout(sitk.GetArrayFromImage(labels).astype(np.uint8))
    tmpl = to_model_layout(normalise(sitk.GetArrayFromImage(template)))
    return lab, tmpl
