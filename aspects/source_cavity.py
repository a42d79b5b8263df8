"""An old infarct's CSF-density cavity, measured on the series' own slices.

The old-infarct finding (:func:`aspects.flags.find`) works on the 2 mm template-aligned grid. On
thick slices (2.5-5 mm) that grid mixes a 1-1.5 cm cortical cavity with the gliotic rim and the
tissue of the slices around it: the cavity reads 10-18 HU there, where strong acute infarcts also
lie, and the acute mask counts the old infarct's rim (docs/results_v2.md, "Old infarcts in the MCA
sub-territory shapes"). In the plane of each slice the scanner resolves it (0.4-1 mm pixels).

:func:`source_cavity` looks there, only around the acute mask (the old-rim rule asks whether an
acute component has a cavity beside it):

1. CSF density in the plane: the 3 x 3 in-plane median of the slice below
   :data:`SOURCE_CAVITY_HU` (a slab that is mostly cavity; hyperacute ischaemia keeps tissue at
   >= ~15 HU, Dzialowski et al. 2004);
2. a compact hole, not a sulcus: what survives an in-plane opening with a square
   :data:`SOURCE_CAVITY_WIDTH_MM` wide (sulci and fissures are 1-3 mm sheets);
3. on the aligned grid, inside the brain, where the contralateral counterpart is tissue
   (>= :data:`aspects.flags.OLD_MIRROR_HU`, lower on a head whose white matter reads low:
   :func:`aspects.flags.mirror_tissue_hu`): ventricles and symmetric CSF spaces drop out;
4. components of at least :data:`aspects.flags.MIN_RIM_CAVITY_ML`.

Chosen on the v2 val split and the old-infarct patterns, then checked on every other set (session 24,
docs/results_v2.md, "An old infarct's cavity on the source slices"): around the acute masks of 132
acute studies (val, test, early change, v1, the fresh draw; 1-12 HU, 0.625-5 mm) it finds >= 0.5 ml
twice, 1.8 ml each beside a 96-151 ml infarct on the real InVesalius head (a CSF pocket of that
head, below the rim rule's 5 % of the lesion); no acute study's score or mask changed. Around
the old infarcts of the controls 0.7-54 ml, the 5 mm cortical ones included.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.flags import MIN_RIM_CAVITY_ML, OLD_CAVITY_REACH_MM, OLD_MIRROR_HU
from aspects.preprocess import Preprocessed, support_block

# 12 HU, not the aligned grid's 10 (aspects.flags.OLD_CAVITY_HU): a 5 mm slab through a cavity
# also holds some of its rim. At 10 HU the 5 mm cortical old infarcts of the old-pattern set kept
# 0.36-0.49 ml (below the component floor), at 12 HU 0.7-1.6 ml.
SOURCE_CAVITY_HU = 12.0
# Opening width (mm; a square of the odd pixel count nearest to it, 7 pixels at 0.45 mm): a 4 mm
# square lost two of the three 5 mm cortical old infarcts it should find (3002, 3011) on the
# old-pattern set; a 4 mm disk found them but took about twice the time of the separable square.
SOURCE_CAVITY_WIDTH_MM = 3.0
# A 3 x 3 median is below the threshold when at least 5 of its 9 pixels are (counted, not sorted).
_MEDIAN_OF_9 = 5


def csf_in_plane(hu_zyx: np.ndarray, threshold_hu: float = SOURCE_CAVITY_HU) -> np.ndarray:
    """Pixels whose 3 x 3 in-plane median (each slice alone, edges nearest) is below ``threshold_hu``."""
    below = np.pad(hu_zyx < threshold_hu, ((0, 0), (1, 1), (1, 1)), mode="edge").view(np.uint8)
    rows, cols = hu_zyx.shape[1:]
    count = np.zeros(hu_zyx.shape, np.uint8)
    for dy in range(3):
        for dx in range(3):
            count += below[:, dy:dy + rows, dx:dx + cols]
    return count >= _MEDIAN_OF_9


def compact_in_plane(mask_zyx: np.ndarray, pixel_mm: float, width_mm: float = SOURCE_CAVITY_WIDTH_MM) -> np.ndarray:
    """What survives an in-plane opening with a square ``width_mm`` wide (each slice alone; a
    square's minimum and maximum filters are separable: about twice as fast as a disk here)."""
    side = 2 * max(1, int(round(width_mm / 2.0 / pixel_mm))) + 1  # odd: the window centred on the pixel
    eroded = ndi.minimum_filter(mask_zyx.astype(np.uint8), size=(1, side, side), mode="constant", cval=0)
    return ndi.maximum_filter(eroded, size=(1, side, side), mode="constant", cval=0) > 0


def _block_image(arr_zyx: np.ndarray, ref: sitk.Image, index: Tuple[int, int, int]) -> sitk.Image:
    img = sitk.GetImageFromArray(arr_zyx.astype(np.uint8))
    img.SetSpacing(ref.GetSpacing())
    img.SetDirection(ref.GetDirection())
    img.SetOrigin(ref.TransformIndexToPhysicalPoint(index))
    return img


Block = Tuple[Tuple[int, int, int], Tuple[int, int, int]]


def source_block(pre: Preprocessed, near: np.ndarray) -> Optional[Tuple[Block, np.ndarray]]:
    """The block of the series' slices that the aligned voxels of ``near`` (bool, (z, y, x)) can
    touch (:func:`aspects.preprocess.support_block`) and a view of its HU, (z, y, x); None when
    ``near`` is empty or outside the series' field."""
    img = sitk.GetImageFromArray(near.astype(np.uint8))
    img.CopyInformation(pre.aligned)
    block = support_block(pre, img, pre.source)
    if block is None:
        return None
    (x0, y0, z0), (nx, ny, nz) = block
    return block, sitk.GetArrayViewFromImage(pre.source)[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx]


def block_on_aligned(mask_zyx: np.ndarray, pre: Preprocessed, block: Block, within: np.ndarray) -> np.ndarray:
    """A mask on a block of the source grid (``block``: (index, size) in (x, y, z) source voxels,
    :func:`aspects.preprocess.support_block`) on the aligned grid, resampled (label-wise linear)
    onto the bounding box of ``within`` only (aligned bool) and returned as a whole aligned mask."""
    zs, ys, xs = (np.flatnonzero(within.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    sub = sitk.Image([int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1), int(zs[-1] - zs[0] + 1)], sitk.sitkUInt8)
    sub.SetSpacing(pre.aligned.GetSpacing())
    sub.SetDirection(pre.aligned.GetDirection())
    sub.SetOrigin(pre.aligned.TransformIndexToPhysicalPoint((int(xs[0]), int(ys[0]), int(zs[0]))))
    on_aligned = sitk.Resample(_block_image(mask_zyx, pre.source, block[0]), sub, pre.aligned_to_source,
                               sitk.sitkLabelLinear, 0, sitk.sitkUInt8)
    out = np.zeros(within.shape, bool)
    out[box] = sitk.GetArrayFromImage(on_aligned) > 0
    return out


def source_cavity(pre: Preprocessed, near: np.ndarray, brain: np.ndarray,
                  counterpart: Optional[np.ndarray] = None, mirror_floor_hu: float = OLD_MIRROR_HU) -> np.ndarray:
    """Compact CSF-density cavity (see the module docstring) within reach of ``near`` (aligned
    bool, (z, y, x)), as a boolean mask on the aligned grid; empty when ``near`` is. The slices
    are the planes of ``pre.source``'s first two axes (the series' regular grid). ``brain``:
    the aligned brain mask; ``counterpart``: the contralateral counterpart (HU, aligned; the plain
    mirror of the aligned image when None); ``mirror_floor_hu``: its least HU that is tissue
    (the study's :attr:`aspects.flags.Findings.mirror_floor_hu`)."""
    near = near.astype(bool)
    out = np.zeros(near.shape, bool)
    if not near.any() or pre.source is None:
        return out
    spacing = pre.aligned.GetSpacing()
    # the rim rule's reach and one voxel more: a cavity component that reaches in from just beyond
    reach = ndi.binary_dilation(near, iterations=max(1, int(round(OLD_CAVITY_REACH_MM / min(spacing)))) + 1)
    found = source_block(pre, reach)
    if found is None:
        return out
    block, src = found
    pixel_mm = float(min(pre.source.GetSpacing()[:2]))
    csf = compact_in_plane(csf_in_plane(src, SOURCE_CAVITY_HU), pixel_mm, SOURCE_CAVITY_WIDTH_MM)
    if not csf.any():
        return out
    cavity = block_on_aligned(csf, pre, block, reach)
    mirror_hu = counterpart if counterpart is not None else np.flip(sitk.GetArrayViewFromImage(pre.aligned), axis=2)
    cavity &= reach & ndi.binary_erosion(brain.astype(bool)) & (mirror_hu >= mirror_floor_hu)
    if not cavity.any():
        return out
    labels, n = ndi.label(cavity, structure=np.ones((3, 3, 3), bool))
    size_ml = np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing)) / 1000.0
    size_ml[0] = 0.0
    return (size_ml >= MIN_RIM_CAVITY_ML)[labels]
