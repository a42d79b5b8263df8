"""From the selected series' HU volume to the template-aligned brain, and back.

``preprocess(source, atlas)`` takes the HU volume of the selected series on its own grid (float32,
LPS, slices in ``aspects.dicom_geometry.sort_slices`` order) and returns a :class:`Preprocessed`:

1. geometry checks: 3-D, sane spacing, enough coverage; a gantry-tilted (sheared) grid is
   resampled onto an orthogonal grid spanning the same volume (so the rest never sees shear);
2. HU clipping to :data:`HU_CLIP` and anti-aliased resampling to a 2 mm "working grid" in the
   series' own orientation (thin slices are smoothed before they are subsampled);
3. skull stripping (:mod:`aspects.skullstrip`);
4. rigid then affine registration of the stripped brain to the symmetric atlas template
   (:func:`aspects.registration.rigid_affine`; from the centres of mass, or turned for a head
   turned far about its long axis: :mod:`aspects.head_pose`), refined after re-masking the head with the
   template brain carried over by the first pass. The template is left-right symmetric, so this
   also puts the patient's mid-sagittal plane on the aligned grid's central plane. A head whose
   strip runs into the face is registered a second time with the first pass on the brain opened
   wider (:func:`opened_brain`), and the better-reading registration kept;
5. resampling onto the aligned grid (:data:`ALIGNED_SPACING`, :data:`ALIGNED_SIZE`), masked by
   the stripped brain intersected with the (slightly dilated) template brain, 0 outside;
6. quality figures: similarity to the template, brain volume, head truncation, affine scale.

The affine transform is kept in memory: :func:`to_slices` brings any aligned image (binary
masks with label-wise linear interpolation, label maps nearest neighbour, intensities linearly)
back onto the original DICOM slices, each on its own plane (:func:`to_source` onto a regular
grid), and :func:`to_aligned` goes the other way.

Gantry tilt and irregular slice steps: the app gives this module the series already resampled onto
a regular orthogonal grid (:mod:`aspects.volume`) together with the slices' own geometry, which
defines the scanned field (QC truncation, region coverage) and the way back (:func:`to_slices`).
A sheared ITK grid given directly is still resampled orthogonally in step 1.

Coverage: the fraction of each atlas region (placed by the affine registration) that lies inside
the scanned slab, in ``Preprocessed.coverage``; a region not covered cannot be assessed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple, cast

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects import gaussian
from aspects.atlas import TERRITORY_GROUPS
from aspects.dicom_geometry import SliceGeometry
from aspects.errors import EXIT_BAD_SERIES, EXIT_PROCESSING, InputError
from aspects.extra_axial import MIN_EXTRA_AXIAL_ML, extra_axial_blood, search_region
from aspects.flags import DENSE_HU
from aspects.head_pose import Axis, axial_axis, turned_start
from aspects.registration import COARSE_STAGES, FINE_STAGES, RegistrationError, ncc, rigid_affine
from aspects.skull_cover import convexity, defect_reasons, uncovered_convexity
from aspects.skullstrip import BRAIN_HU, CUT_VOXELS, ball, fill_holes, largest_component, strip_skull
from aspects.volume import float_image, slice_grid, stack_grid

if TYPE_CHECKING:
    from aspects.series import SourceSeries

log = logging.getLogger(__name__)

ALIGNED_SPACING = 2.0  # mm, isotropic
ALIGNED_SIZE: Tuple[int, int, int] = (96, 112, 96)  # (x, y, z) voxels: 192 x 224 x 192 mm
WORK_SPACING = 2.0  # mm, skull stripping and registration grid in the series' orientation
HU_CLIP = (-1024.0, 3071.0)  # 12-bit CT range: removes padding values like -3024 / -2000
AIR_HU = -1024.0
# Template brain dilated by this many aligned voxels bounds the patient's brain mask: it drops
# neck tissue below the foramen magnum that thresholding cannot tell from brainstem.
TEMPLATE_MARGIN_VOXELS = 2
REG_WINDOW = (0.0, 100.0)  # HU window of both images during registration (brain tissue only)

MIN_SLICES = 8
MIN_COVERAGE_MM = 40.0  # along the slice normal: less cannot hold the ASPECTS levels
MAX_SPACING_MM = 10.0
SHEAR_TOLERANCE = 1e-3  # |D^T D - I| above this: gantry tilt (sheared grid)
MIN_BRAIN_ML = 250.0  # less brain than this after stripping: not a usable head CT
# Quality (low_confidence): NCC of aligned image and template, both smoothed by QC_SMOOTH_VOX
# (noise and thick-slice texture out), inside the template brain shrunk by QC_ERODE_VOXELS.
# Measured with atlas v2 (the smooth scct template; aspects-qc-calibration, 2026-12-02): correct
# registrations of 22 held-out phantoms 0.78-0.90 and of the real InVesalius head 0.57 (checked by
# eye); the template against itself shifted 6 / 10 mm 0.60 / 0.27, rotated 10 / 20 degrees
# 0.71 / 0.40; the real GE series 0.64 through the app (tilt corrected), 0.40 read without its
# gantry-tilt shear. 0.5 keeps both real heads and flags 20-degree and 10 mm errors (atlas v1, sharper: phantoms 0.72-0.79, threshold 0.6).
QC_SMOOTH_VOX = 1.0
QC_ERODE_VOXELS = 2
NCC_LOW = 0.5
NCC_FAIL = 0.25  # below this the registration has failed: an error, not a low-confidence result
BRAIN_ML_RANGE = (800.0, 2000.0)
# Affine volume ratio patient / template. The template's brain reads ~1.5 l to the app, so 0.6 is
# a brain of ~0.9 l: a small adult head (0.64-0.71 at 1.06 l on the generator's four heads, session
# 40) is not a failed registration; 0.7 (sessions 1-39) called it one.
SCALE_RANGE = (0.6, 1.45)
TRUNCATION_LOW = 0.05  # fraction of the template brain outside the scanned field of view
# The first registration pass matches the stripped brain's outline to the template's. Where the
# strip's 4 mm opening (aspects.skullstrip.CUT_VOXELS) leaves soft tissue of the face or neck joined
# to the brain through a gap in a faint skull base, the affine can grow to cover it and settle
# 1-2 cm off (QC NCC 0.61-0.63 against 0.85 on the same head otherwise; scct-template phantoms,
# sessions 41-42). A 6 mm opening cuts such bridges. Where it cuts off an appendage (at least
# REGISTRATION_APPENDAGE_ML lying more than 6 mm from what it keeps: 25-146 ml on the scct head,
# 13-43 ml on half the GE head's poses; at most 0.33 ml on the real heads and the others), the head is
# registered a second time with pass 1 on the opened brain, and that registration is kept when
# its QC NCC is REGISTRATION_GAIN higher. Not the opened brain always: it mends the wrong optima
# but falls into others (1 in 16 bridged phantoms of the elderly draw, 0.83 -> 0.60), and on a head
# without a bridge it would move every registration by up to ~1 mm for nothing. Pass 2 re-masks
# the head with the template brain it carries over either way.
REGISTRATION_CUT_VOXELS = 3
REGISTRATION_APPENDAGE_ML = 5.0
REGISTRATION_GAIN = 0.05


@dataclass
class Preprocessed:
    """Result of :func:`preprocess`.

    ``aligned_to_source`` maps physical points of aligned space to source space (it resamples
    source images onto the aligned grid); ``source_to_aligned`` is its inverse.
    """

    source: sitk.Image  # the input, untouched (the geometry every output returns to)
    aligned: sitk.Image  # float32 HU on the aligned grid, skull-stripped, 0 outside the brain
    brain_mask: sitk.Image  # uint8 on the aligned grid
    template: sitk.Image  # atlas template resampled onto the aligned grid (float32 HU)
    aligned_to_source: sitk.AffineTransform
    source_to_aligned: sitk.AffineTransform
    qc: Dict[str, object] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    # Fraction (0..1) of each atlas region label 1..20 inside the scanned field.
    coverage: Dict[int, float] = field(default_factory=dict)
    # uint8 on the aligned grid: within reach of calcium / bone in the unstripped series
    # (:func:`dense_tissue`); None where the caller did not compute it.
    dense: Optional[sitk.Image] = None
    # uint8 on the aligned grid: blood between the brain and the skull (aspects.extra_axial), found
    # in the unstripped head; None where the caller did not look.
    extra_axial: Optional[sitk.Image] = None


@dataclass(frozen=True)
class AlignedTemplate:
    """The atlas on the aligned grid, as every study's preprocessing uses it (computed once per
    atlas by :func:`aligned_template`)."""

    image: sitk.Image  # the template on the aligned grid (float32 HU, 0 outside): the fixed image
    registration_image: sitk.Image  # the same clipped to REG_WINDOW (what ANTs sees)
    brain: np.ndarray  # bool (z, y, x): the template brain, holes filled
    carry: sitk.Image  # uint8: the brain dilated by one voxel (pass 2 re-masks the patient with it)
    bound: np.ndarray  # bool: the brain dilated by TEMPLATE_MARGIN_VOXELS (bounds the patient's mask)
    labels: np.ndarray  # uint8: the atlas labels on the aligned grid (nearest neighbour), for coverage
    qc_interior: np.ndarray  # bool: the brain eroded by QC_ERODE_VOXELS
    qc_template: np.ndarray  # float: the clipped template smoothed by QC_SMOOTH_VOX
    axis: Optional[Axis]  # the template brain's axial long axis (aspects.head_pose: a far-turned head's start)
    convexity: np.ndarray  # bool: the brain's surface above the skull base (aspects.skull_cover)
    extra_axial_region: np.ndarray  # bool: where blood between brain and skull is looked for (aspects.extra_axial)


_TEMPLATES: Dict[int, Tuple[weakref.ref, AlignedTemplate]] = {}
_TEMPLATES_LOCK = threading.Lock()


def aligned_template(atlas) -> AlignedTemplate:
    """:class:`AlignedTemplate` of ``atlas`` (an :class:`aspects.atlas.Atlas`), built on first use
    and kept while the atlas lives: a process that serves several studies builds it once."""
    with _TEMPLATES_LOCK:  # a second thread waits for the first one's result
        hit = _TEMPLATES.get(id(atlas))
        if hit is not None and hit[0]() is atlas:
            return hit[1]
        out = _aligned_template(atlas)
        _TEMPLATES[id(atlas)] = (weakref.ref(atlas), out)
        weakref.finalize(atlas, _TEMPLATES.pop, id(atlas), None)  # dropped with the atlas
        return out


def _aligned_template(atlas) -> AlignedTemplate:
    fixed = template_on_aligned(atlas.template)
    fixed_arr = sitk.GetArrayFromImage(fixed)
    brain = fill_holes(fixed_arr > 0.5)
    surface = convexity(brain)
    return AlignedTemplate(
        image=fixed,
        registration_image=_like(np.clip(fixed_arr, *REG_WINDOW).astype(np.float32), fixed),
        brain=brain,
        carry=_like(_dilate(brain, 1).astype(np.uint8), fixed),
        bound=_dilate(brain, TEMPLATE_MARGIN_VOXELS),
        labels=atlas_on_aligned(atlas.labels, fixed),
        qc_interior=ndi.binary_erosion(brain, iterations=QC_ERODE_VOXELS),
        qc_template=ndi.gaussian_filter(np.clip(fixed_arr, *REG_WINDOW), QC_SMOOTH_VOX),
        axis=axial_axis(brain, fixed),
        convexity=surface,
        extra_axial_region=search_region(surface, np.isin(atlas_on_aligned(atlas.territories, fixed),
                                                          TERRITORY_GROUPS["VB"]), fixed.GetSpacing()),
    )


def _axis_aligned(direction: Tuple[float, ...]) -> bool:
    d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    return bool(np.allclose(np.sort(d, axis=1)[:, -1], 1.0, atol=1e-4) and np.allclose(d.sum(axis=0), 1.0, atol=1e-4))


def aligned_grid(template: sitk.Image) -> sitk.Image:
    """Empty float32 image with the aligned grid's geometry for this template.

    Identity direction, :data:`ALIGNED_SPACING`; x centred on the template grid's central column
    (the template is symmetric about it), y and z centred on the template brain's bounding box.
    """
    if not _axis_aligned(template.GetDirection()):
        raise ValueError("the atlas template must be axis-aligned (direction a signed permutation)")
    size = np.asarray(template.GetSize())
    arr = sitk.GetArrayViewFromImage(template)
    nz = np.argwhere(arr > 0)
    if nz.size == 0:
        raise ValueError("the atlas template is empty")
    lo_zyx, hi_zyx = nz.min(axis=0), nz.max(axis=0)
    corners = [template.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx[::-1]])
               for idx in (lo_zyx, hi_zyx)]
    centre = (np.asarray(corners[0]) + np.asarray(corners[1])) / 2.0
    centre[0] = template.TransformContinuousIndexToPhysicalPoint([(size[0] - 1) / 2.0, 0.0, 0.0])[0]
    n = np.asarray(ALIGNED_SIZE, dtype=float)
    origin = centre - (n - 1) / 2.0 * ALIGNED_SPACING
    ref = sitk.Image([int(v) for v in ALIGNED_SIZE], sitk.sitkFloat32)
    ref.SetSpacing([ALIGNED_SPACING] * 3)
    ref.SetOrigin([float(v) for v in origin])
    ref.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return ref


def template_on_aligned(template: sitk.Image) -> sitk.Image:
    """The atlas template on the aligned grid (anti-aliased from 1 mm, linear, 0 outside)."""
    ref = aligned_grid(template)
    smooth = _antialias(template, ALIGNED_SPACING)
    return sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _antialias_variance(img: sitk.Image, target_mm: float) -> np.ndarray:
    """Per-axis Gaussian variance (mm^2) of :func:`_antialias`: FWHM^2 = target^2 - spacing^2,
    0 on axes already coarser than the target."""
    sp = np.asarray(img.GetSpacing())
    return np.maximum(target_mm**2 - sp**2, 0.0) / (8 * np.log(2))


def _gaussian(img: sitk.Image, var: np.ndarray, clamp: Optional[Tuple[float, float]] = None) -> sitk.Image:
    """The discrete Gaussian of :func:`_antialias` with per-axis variance ``var`` (mm^2), of
    ``img`` clipped to ``clamp`` when given: ITK's filter's float32 values, computed by
    :mod:`aspects.gaussian` (same arithmetic, two threads, no double copies of the volume) where
    that matches this ITK, else by ITK."""
    if img.GetDimension() == 3 and img.GetPixelID() == sitk.sitkFloat32 and gaussian.matches_itk():
        source = sitk.GetArrayViewFromImage(img)
        out, pixels = float_image(source.shape)
        gaussian.discrete_gaussian(source, img.GetSpacing(), var, clamp, out=pixels)
        out.CopyInformation(img)
        return out
    if clamp is not None:
        img = sitk.Clamp(img, sitk.sitkFloat32, clamp[0], clamp[1])
    return gaussian.itk_gaussian(img, var)


def _antialias(img: sitk.Image, target_mm: float) -> sitk.Image:
    """Gaussian pre-filter so that resampling to ``target_mm`` does not alias (per axis:
    FWHM^2 = target^2 - spacing^2, nothing on axes already coarser than the target)."""
    var = _antialias_variance(img, target_mm)
    return _gaussian(img, var) if np.any(var > 0.01) else img


def _clamped_antialias(img: sitk.Image, target_mm: float) -> sitk.Image:
    """``_antialias(sitk.Clamp(img, float32, *HU_CLIP), target_mm)``, the clamp done slice by
    slice inside the Gaussian (no clamped copy of a thin study)."""
    var = _antialias_variance(img, target_mm)
    if not np.any(var > 0.01):
        return sitk.Clamp(img, sitk.sitkFloat32, HU_CLIP[0], HU_CLIP[1])
    if img.GetPixelID() != sitk.sitkFloat32:
        img = sitk.Cast(img, sitk.sitkFloat32)
    return _gaussian(img, var, HU_CLIP)


def check_geometry(source: sitk.Image) -> sitk.Image:
    """Validate the series grid; return it as float32 on an orthogonal grid.

    A gantry-tilted series has a sheared grid (slice axis not perpendicular to the slice plane).
    It is resampled onto an orthogonal grid with the same in-plane axes, the slice normal as
    third axis, the same spacing and the same physical extent, so downstream code only sees
    orthonormal directions. ``source`` itself is kept as the output geometry.
    """
    if source.GetDimension() != 3:
        raise InputError(EXIT_BAD_SERIES, f"expected a 3-D volume, got {source.GetDimension()}-D")
    size, sp = np.asarray(source.GetSize()), np.asarray(source.GetSpacing())
    if size[2] < MIN_SLICES:
        raise InputError(EXIT_BAD_SERIES, f"the series has {size[2]} slices; at least {MIN_SLICES} are needed")
    if np.any(sp <= 0) or np.any(sp > MAX_SPACING_MM):
        raise InputError(EXIT_BAD_SERIES, f"voxel spacing {tuple(np.round(sp, 3))} mm is outside (0, {MAX_SPACING_MM}]")
    d = np.asarray(source.GetDirection(), dtype=float).reshape(3, 3)
    cols = d / np.linalg.norm(d, axis=0, keepdims=True)
    normal = np.cross(cols[:, 0], cols[:, 1])
    coverage = float(abs(np.dot(cols[:, 2], normal)) * sp[2] * (size[2] - 1))
    if coverage < MIN_COVERAGE_MM:
        raise InputError(EXIT_BAD_SERIES, f"the series covers {coverage:.0f} mm; at least {MIN_COVERAGE_MM:.0f} mm are needed")
    # No copy when the series is float32 already (the app's HU volume): a thin study is 320 MB.
    img = source if source.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(source, sitk.sitkFloat32)
    if np.abs(cols.T @ cols - np.eye(3)).max() <= SHEAR_TOLERANCE and np.allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-4):
        return img
    tilt = float(np.degrees(np.arccos(min(1.0, abs(np.dot(cols[:, 2], normal))))))
    log.info("sheared grid (gantry tilt %.1f deg): resampling to an orthogonal grid", tilt)
    q = np.column_stack([cols[:, 0], np.cross(normal, cols[:, 0]), normal])
    if np.dot(q[:, 2], cols[:, 2]) < 0:
        q[:, 2] *= -1
        q[:, 1] *= -1
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)], float)
    pts = np.array([source.TransformContinuousIndexToPhysicalPoint(list(c)) for c in corners])
    local = pts @ q  # coordinates along q's axes
    new_sp = np.array([sp[0], sp[1], coverage / max(size[2] - 1, 1)])
    lo, hi = local.min(axis=0), local.max(axis=0)
    new_size = np.floor((hi - lo) / new_sp + 1e-6).astype(int) + 1
    ref = sitk.Image([int(v) for v in new_size], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in new_sp])
    ref.SetDirection([float(v) for v in q.ravel()])
    ref.SetOrigin([float(v) for v in q @ lo])
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


def to_working_grid(img: sitk.Image) -> sitk.Image:
    """HU-clipped, anti-aliased copy on a :data:`WORK_SPACING` grid in the image's orientation,
    covering the same field of view."""
    # An axis-by-axis version (convolve, then interpolate, one axis at a time) was 4x faster on
    # a thin study but differs by float32 rounding, and ANTs turns that into a different
    # registration (region Dice 0.96 against this path, docs/performance.md): so the speed comes
    # from aspects.gaussian instead, which reproduces ITK's filter bit for bit.
    smooth = _clamped_antialias(img, WORK_SPACING)
    sp, size = np.asarray(img.GetSpacing()), np.asarray(img.GetSize())
    n = np.maximum(np.ceil(size * sp / WORK_SPACING).astype(int), 1)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    origin = np.asarray(img.GetOrigin()) + d @ (WORK_SPACING / 2.0 - sp / 2.0)
    ref = sitk.Image([int(v) for v in n], sitk.sitkFloat32)
    ref.SetSpacing([WORK_SPACING] * 3)
    ref.SetDirection(img.GetDirection())
    ref.SetOrigin([float(v) for v in origin])
    return sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


def _like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def _dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndi.binary_dilation(mask, structure=ndi.generate_binary_structure(3, 1), iterations=voxels)


def opened_brain(work_arr: np.ndarray, brain: np.ndarray,
                 cut_voxels: int = REGISTRATION_CUT_VOXELS) -> Tuple[Optional[np.ndarray], float]:
    """(The skull strip of ``work_arr`` opened by ``cut_voxels`` where that cuts off an appendage of
    ``brain`` (the strip itself) of at least :data:`REGISTRATION_APPENDAGE_ML` lying more than
    ``cut_voxels`` voxels from what it keeps, else None; that appendage's ml). See
    :data:`REGISTRATION_CUT_VOXELS`."""
    if cut_voxels <= CUT_VOXELS:
        return None, 0.0
    opened = strip_skull(work_arr, cut_voxels=cut_voxels)
    near = ndi.binary_dilation(opened, structure=ball(cut_voxels))
    appendage_ml = float((brain & ~near).sum()) * WORK_SPACING**3 / 1000.0
    return (opened if appendage_ml >= REGISTRATION_APPENDAGE_ML else None), appendage_ml


@dataclass
class _Attempt:
    """One registration of the head to the template and what it gives on the aligned grid."""

    a2s: sitk.AffineTransform
    aligned: np.ndarray  # float32 HU, 0 outside the brain mask
    head: np.ndarray  # float32 HU, the unstripped head
    mask: np.ndarray  # bool: the brain mask on the aligned grid
    inside: np.ndarray  # bool: the scanned field on the aligned grid
    qc: Dict[str, object]
    registration_s: float
    resample_s: float


def _attempt(work: sitk.Image, work_arr: np.ndarray, seen: np.ndarray, brain: np.ndarray, tmpl: AlignedTemplate,
             geometry: Optional[SliceGeometry], ortho: sitk.Image, start: Optional[sitk.Transform]) -> _Attempt:
    """Register the head to the template (pass 1 on ``seen``, pass 2 re-masked), bring the strip
    ``brain`` and the head onto the aligned grid and measure the QC."""
    t = time.perf_counter()
    fixed, fixed_reg = tmpl.image, tmpl.registration_image
    try:
        # Pass 1: stripped brain (0 outside) to template, rigid then affine from ``start`` (None:
        # the centres of mass).
        moving = _like(np.where(seen, np.clip(work_arr, *REG_WINDOW), 0.0).astype(np.float32), work)
        a2s = rigid_affine(fixed_reg, moving, COARSE_STAGES, initial=start)
        # Pass 2: the stripped mask misses brain next to partial-volumed bone (vertex, skull base
        # on thick slices) and matching its edge to the template's shrinks the affine; so the
        # patient is re-masked by the template brain carried over by pass 1 (one voxel larger,
        # bone excluded) and the affine refined down to 2 mm.
        carried = sitk.Resample(tmpl.carry, work, sitk.AffineTransform(a2s.GetInverse()), sitk.sitkNearestNeighbor, 0,
                                sitk.sitkUInt8)
        soft = (work_arr >= BRAIN_HU[0]) & (work_arr <= BRAIN_HU[1])
        mask2 = (sitk.GetArrayViewFromImage(carried) > 0) & soft
        moving = _like(np.where(mask2, np.clip(work_arr, *REG_WINDOW), 0.0).astype(np.float32), work)
        a2s = rigid_affine(fixed_reg, moving, FINE_STAGES, initial=a2s)
    except RegistrationError as exc:
        raise InputError(EXIT_PROCESSING, f"registration to the atlas template failed: {exc}") from exc
    registration_s = time.perf_counter() - t

    t = time.perf_counter()
    aligned_hu = sitk.GetArrayFromImage(sitk.Resample(work, fixed, a2s, sitk.sitkLinear, AIR_HU, sitk.sitkFloat32))
    mask_lin = sitk.GetArrayFromImage(sitk.Resample(_like(brain.astype(np.float32), work), fixed, a2s,
                                                    sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    mask = largest_component((mask_lin >= 0.5) & tmpl.bound)
    mask = fill_holes(mask)
    aligned_arr = np.where(mask, aligned_hu, 0.0).astype(np.float32)
    inside = scanned_field(fixed, a2s, geometry, ortho)
    # The QC brain volume is the final mask's (inside the registered template brain): the raw strip
    # can run into the face and neck through a faint skull base (2150-2700 ml on the averaged skull
    # of the scct template) while the registration is still right.
    aligned_ml = float(mask.sum()) * float(np.prod(fixed.GetSpacing())) / 1000.0
    qc = _quality(aligned_arr, aligned_hu, tmpl, aligned_ml, a2s, inside)
    return _Attempt(a2s=a2s, aligned=aligned_arr, head=aligned_hu, mask=mask, inside=inside, qc=qc, registration_s=registration_s,
                    resample_s=time.perf_counter() - t)


def preprocess(source: sitk.Image, atlas, geometry: Optional[SliceGeometry] = None,
               registration_cut_voxels: int = REGISTRATION_CUT_VOXELS,
               extra_axial_min_ml: float = MIN_EXTRA_AXIAL_ML) -> Preprocessed:
    """Skull-strip the series and align it to ``atlas.template`` (see the module docstring).

    ``geometry``: the original slices (their slab is the scanned field); None: the extent of
    ``source`` itself. ``registration_cut_voxels``: the wider opening of the brain a second
    registration tries where the strip runs into the face (the app's: :data:`REGISTRATION_CUT_VOXELS`;
    the strip's own, :data:`aspects.skullstrip.CUT_VOXELS`: never). ``extra_axial_min_ml``: the
    least size of the blood between the brain and the skull kept in ``Preprocessed.extra_axial``
    (the app's: :data:`aspects.extra_axial.MIN_EXTRA_AXIAL_ML`; the calibration tool: 0, every
    component).

    Raises :class:`InputError` (exit 5) for unusable geometry and (exit 7) when no brain is found
    or the registration fails.
    """
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    ortho = check_geometry(source)
    work = to_working_grid(ortho)
    timings["resample_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    work_arr = sitk.GetArrayFromImage(work)
    brain = strip_skull(work_arr)
    brain_ml = float(brain.sum()) * WORK_SPACING**3 / 1000.0
    if brain_ml < MIN_BRAIN_ML:
        raise InputError(EXIT_PROCESSING, f"no brain found in the selected series ({brain_ml:.0f} ml of brain-like tissue inside the skull)")
    timings["skullstrip_s"] = time.perf_counter() - t

    tmpl = aligned_template(atlas)
    # A head turned far about its long axis starts turned (aspects.head_pose); any other from the
    # centres of mass.
    start, start_turn = turned_start(tmpl.axis, brain, work)
    if start is not None:
        log.info("head turned %.0f deg about its long axis: the registration starts turned", start_turn)
    # The wider opening (0.2-0.3 s of CPU) is computed while the first registration runs in its
    # own process (aspects.registration: this thread waits there without the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aspects-opening") as pool:
        opening = pool.submit(opened_brain, work_arr, brain, registration_cut_voxels)
        first = _attempt(work, work_arr, brain, brain, tmpl, geometry, ortho, start)
        opened, appendage_ml = opening.result()
    chosen, attempts = first, [first]
    if opened is not None:  # the strip runs into the face: try pass 1 without it (REGISTRATION_CUT_VOXELS)
        second = _attempt(work, work_arr, opened, brain, tmpl, geometry, ortho, start)
        attempts.append(second)
        if float(second.qc["ncc"]) >= float(first.qc["ncc"]) + REGISTRATION_GAIN:  # type: ignore[arg-type]
            chosen = second
        log.info("the skull strip runs into the face (%.0f ml cut off by a %d mm opening): registered again without "
                 "it, similarity %.2f against %.2f: kept the %s", appendage_ml, 2 * registration_cut_voxels,
                 second.qc["ncc"], first.qc["ncc"], "second" if chosen is second else "first")
    timings["registration_s"] = sum(a.registration_s for a in attempts)
    timings["resample_aligned_s"] = sum(a.resample_s for a in attempts)
    a2s, qc, inside, mask = chosen.a2s, chosen.qc, chosen.inside, chosen.mask
    fixed = tmpl.image
    aligned = _like(chosen.aligned, fixed)
    brain_mask = _like(mask.astype(np.uint8), fixed)
    dense = dense_tissue(work, fixed, a2s, float(ortho.GetSpacing()[2]))
    t = time.perf_counter()
    extra = extra_axial_blood(chosen.head, tmpl.extra_axial_region, fixed.GetSpacing(), inside, extra_axial_min_ml)
    timings["extra_axial_s"] = time.perf_counter() - t
    qc["start_turn_deg"] = round(start_turn, 1)  # 0: the registration started from the centres of mass
    qc["strip_appendage_ml"] = round(appendage_ml, 1)  # >= REGISTRATION_APPENDAGE_ML: registered twice
    qc["registration_attempts"] = [float(x.qc["ncc"]) for x in attempts]  # type: ignore[arg-type]
    coverage = region_coverage(tmpl.labels, inside)
    if float(qc["ncc"]) < NCC_FAIL:  # type: ignore[arg-type]
        raise InputError(EXIT_PROCESSING, f"registration to the atlas template failed (similarity {qc['ncc']:.2f})")
    timings["total_s"] = time.perf_counter() - t0
    return Preprocessed(source=source, aligned=aligned, brain_mask=brain_mask, template=fixed,
                        aligned_to_source=a2s, source_to_aligned=sitk.AffineTransform(a2s.GetInverse()),
                        qc=qc, timings={k: round(v, 3) for k, v in timings.items()}, coverage=coverage,
                        dense=dense, extra_axial=_like(extra.astype(np.uint8), fixed))


def preprocess_series(series: SourceSeries, atlas) -> Preprocessed:
    """:func:`preprocess` of the selected series (the original slices bound the scanned field),
    with its log lines: the preprocessing stage of the app and of :mod:`aspects.pipeline`."""
    plog = logging.getLogger("aspects.pipeline")  # the stage's log name since it lived there
    plog.info("preprocessing: skull stripping and registration to the atlas template")
    pre = preprocess(series.volume.image, atlas, geometry=series.volume.geometry)
    plog.info("preprocessing done in %.1f s %s; QC %s", pre.timings.get("total_s", 0.0), pre.timings, pre.qc)
    if pre.qc.get("low_confidence"):
        plog.warning("low confidence: %s", "; ".join(map(str, cast(List[object], pre.qc.get("reasons") or []))))
    return pre


def dense_tissue(work: sitk.Image, ref: sitk.Image, a2s: sitk.AffineTransform, slice_mm: float) -> sitk.Image:
    """uint8 on ``ref``: 1 where the linearly resampled mask of calcium / bone density
    (>= flags.DENSE_HU) of the unstripped ``work`` image is above 0, i.e. next to such tissue.
    A thick slice averages bone from up to half its thickness away along the slice normal (the
    working grid's z), so the mask reaches that far along z first."""
    d = sitk.BinaryThreshold(work, DENSE_HU, 1e9, 1, 0)
    reach = int(slice_mm // (2 * WORK_SPACING))
    if reach > 0:
        d = sitk.BinaryDilate(d, [0, 0, reach])
    frac = sitk.Resample(sitk.Cast(d, sitk.sitkFloat32), ref, a2s, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.Cast(frac > 0.0, sitk.sitkUInt8)


# Slices of the aligned grid per step of :func:`scanned_field`.
SCANNED_FIELD_SLAB = 8


def scanned_field(ref: sitk.Image, a2s: sitk.AffineTransform, geometry: Optional[SliceGeometry],
                  image: sitk.Image) -> np.ndarray:
    """Boolean (z, y, x) mask of the ``ref`` grid voxels whose source point (through ``a2s``) was
    scanned: inside the original slices' slab when ``geometry`` is given, else inside ``image``."""
    if geometry is None:
        fov = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
        fov.CopyInformation(image)
        return sitk.GetArrayFromImage(sitk.Resample(fov, ref, a2s, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    nz, ny, nx = ref.GetSize()[::-1]
    d = np.asarray(ref.GetDirection()).reshape(3, 3) * np.asarray(ref.GetSpacing())[None, :]
    origin = np.asarray(ref.GetOrigin())
    m = np.asarray(a2s.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(a2s.GetCenter()), np.asarray(a2s.GetTranslation())
    yy, xx = (a.ravel() for a in np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij"))
    out = np.empty((nz, ny, nx), bool)
    # Slab by slab, each point computed as on the whole grid at once: a few MB of work arrays
    # instead of ~200 MB (0.2-0.5 s of page faults and memory traffic on the critical path).
    for z0 in range(0, nz, SCANNED_FIELD_SLAB):
        k = min(SCANNED_FIELD_SLAB, nz - z0)
        idx = np.column_stack([np.tile(xx, k), np.tile(yy, k), np.repeat(np.arange(z0, z0 + k, dtype=float), ny * nx)])
        aligned_pts = idx @ d.T + origin
        source_pts = (aligned_pts - c) @ m.T + c + t
        out[z0:z0 + k] = geometry.contains(source_pts).reshape(k, ny, nx)
    return out


def atlas_on_aligned(labels: sitk.Image, ref: sitk.Image) -> np.ndarray:
    """The atlas label map (template space) on the aligned grid, nearest neighbour."""
    return sitk.GetArrayFromImage(sitk.Resample(labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt8))


def region_coverage(labels_aligned: np.ndarray, inside: np.ndarray) -> Dict[int, float]:
    """Fraction of each region label 1..20 inside the scanned field (1.0 for an absent label)."""
    lab = labels_aligned.astype(np.int64).ravel()
    total = np.bincount(lab, minlength=21)
    covered = np.bincount(lab[inside.ravel()], minlength=21)
    return {v: float(covered[v] / total[v]) if total[v] else 1.0 for v in range(1, 21)}


def patient_ml_ratio(qc: Optional[Mapping[str, object]]) -> float:
    """Patient ml per ml of the aligned grid: the volume ratio of the aligned -> source affine, as
    the QC records it (``affine_scale``); 1.0 without it. Volumes counted on the aligned grid are
    the template's (a head 10 % larger than the template in each axis fills 25 % less of it)."""
    value = (qc or {}).get("affine_scale")
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def size_reasons(brain_ml: float, scale: float) -> List[str]:
    """QC reasons for a brain volume (patient ml) or head size (affine volume ratio to the
    template) outside an adult's (:data:`BRAIN_ML_RANGE`, :data:`SCALE_RANGE`)."""
    reasons: List[str] = []
    if not BRAIN_ML_RANGE[0] <= brain_ml <= BRAIN_ML_RANGE[1]:
        reasons.append(f"implausible brain volume {brain_ml:.0f} ml")
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        reasons.append(f"implausible head size (scale {scale:.2f} x template)")
    return reasons


def qc_similarity(aligned: np.ndarray, tmpl: AlignedTemplate, inside: np.ndarray) -> float:
    """The QC's NCC of an aligned head (HU, 0 outside its brain) against the template: both
    smoothed by :data:`QC_SMOOTH_VOX`, inside the template brain shrunk by :data:`QC_ERODE_VOXELS`
    and the scanned field ``inside`` (bool, aligned grid) shrunk as much."""
    # Interior structure (ventricles, cisterns, grey/white), not the stripping edge, and only where
    # the series has slices: a study cut short is judged on what it shows (truncation is its own reason).
    interior = tmpl.qc_interior & ndi.binary_erosion(inside, iterations=QC_ERODE_VOXELS)
    a = ndi.gaussian_filter(np.clip(aligned, *REG_WINDOW), QC_SMOOTH_VOX)
    return ncc(a, tmpl.qc_template, interior)


def _quality(aligned: np.ndarray, head_hu: np.ndarray, tmpl: AlignedTemplate, aligned_brain_ml: float,
             a2s: sitk.AffineTransform, inside: np.ndarray) -> Dict[str, object]:
    similarity = qc_similarity(aligned, tmpl, inside)
    uncovered = uncovered_convexity(head_hu, tmpl.convexity, inside, float(tmpl.image.GetSpacing()[0]))
    scale = float(abs(np.linalg.det(np.asarray(a2s.GetMatrix()).reshape(3, 3))))
    brain_ml = aligned_brain_ml * scale  # patient ml: the affine's volume ratio
    truncation = float(1.0 - inside[tmpl.brain].mean()) if tmpl.brain.any() else 1.0
    reasons: List[str] = []
    if similarity < NCC_LOW:
        reasons.append(f"poor registration to the template (NCC {similarity:.2f} < {NCC_LOW})")
    if truncation > TRUNCATION_LOW:
        reasons.append(f"head truncated: {100 * truncation:.0f}% of the brain outside the scanned field")
    reasons += size_reasons(brain_ml, scale)
    reasons += defect_reasons(uncovered)
    return {"ncc": round(similarity, 4), "brain_volume_ml": round(brain_ml, 1), "truncation_fraction": round(truncation, 4),
            "affine_scale": round(scale, 4), "skull_uncovered_cm2": uncovered, "low_confidence": bool(reasons),
            "reasons": reasons}


def _interpolator(img: sitk.Image, label: bool) -> int:
    """Linear for intensities. Binary masks: label-wise linear (ANTs' ``genericLabel``: smooth
    outline, no new values). Multi-label maps: nearest neighbour, because label-wise linear costs
    one pass per label (~5 s for 20 regions onto a 512 x 512 x 36 series)."""
    if not label:
        return sitk.sitkLinear
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(img)
    return sitk.sitkLabelLinear if stats.GetMaximum() <= 1 else sitk.sitkNearestNeighbor


def to_source(pre: Preprocessed, aligned_img: sitk.Image, label: bool = True) -> sitk.Image:
    """An aligned-grid image resampled onto the source series grid (same pixel type), 0 outside
    the aligned grid; interpolation as in :func:`_interpolator`."""
    return sitk.Resample(aligned_img, pre.source, pre.source_to_aligned, _interpolator(aligned_img, label),
                         0.0, aligned_img.GetPixelID())


def to_slices(pre: Preprocessed, aligned_img: sitk.Image, geometry: SliceGeometry, label: bool = True) -> np.ndarray:
    """An aligned-grid image sampled at every pixel of the original slices: (N, rows, cols) array
    index-aligned with the sorted DICOM instances, each slice on its own plane (gantry tilt and
    unequal steps included); 0 outside the aligned grid; interpolation as in :func:`_interpolator`."""
    interp = _interpolator(aligned_img, label)
    rows, cols = geometry.shape
    if geometry.is_regular:  # one 3-D grid holds every slice
        ref = stack_grid(geometry)
        if label:
            # Only the block that can receive a label is sampled (a thin study's infarct mask:
            # ~1 % of its 80 M source voxels); every voxel outside it is 0 either way.
            out = np.zeros((geometry.n_slices, rows, cols), sitk.GetArrayViewFromImage(aligned_img).dtype)
            block = support_block(pre, aligned_img, ref)
            if block is None:
                return out  # an empty mask: nothing to sample
            index, size = block
            sub = sitk.Image(size, sitk.sitkUInt8)
            sub.SetOrigin(ref.TransformIndexToPhysicalPoint(index))
            sub.SetSpacing(ref.GetSpacing())
            sub.SetDirection(ref.GetDirection())
            (x0, y0, z0), (nx, ny, nz) = index, size
            out[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx] = sitk.GetArrayFromImage(
                sitk.Resample(aligned_img, sub, pre.source_to_aligned, interp, 0.0, aligned_img.GetPixelID()))
            return out
        return sitk.GetArrayFromImage(sitk.Resample(aligned_img, ref, pre.source_to_aligned, interp, 0.0,
                                                    aligned_img.GetPixelID()))
    out = np.zeros((geometry.n_slices, rows, cols), sitk.GetArrayViewFromImage(aligned_img).dtype)
    for k in range(geometry.n_slices):
        ref = slice_grid(geometry, k)
        out[k] = sitk.GetArrayFromImage(sitk.Resample(aligned_img, ref, pre.source_to_aligned, interp, 0.0,
                                                      aligned_img.GetPixelID()))[0]
    return out


def support_block(pre: Preprocessed, aligned_img: sitk.Image, ref: sitk.Image,
                   margin_vox: int = 2) -> Optional[Tuple[Tuple[int, int, int], Tuple[int, int, int]]]:
    """(index, size) in ``ref``'s (x, y, z) voxels of the block that holds every point whose
    label interpolation (nearest neighbour, label-wise linear) can touch a non-zero voxel of
    ``aligned_img``: the non-zero bounding box grown by one voxel (the interpolation's reach),
    its corners taken to source space by the affine, plus ``margin_vox`` source voxels.
    None when ``aligned_img`` is all zero."""
    arr = sitk.GetArrayViewFromImage(aligned_img)
    reach = []
    for axis in (2, 1, 0):  # x, y, z of the aligned grid
        hit = np.flatnonzero(arr.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        reach.append((float(hit[0]) - 1.0, float(hit[-1]) + 1.0))
    corners = []
    for cx in reach[0]:
        for cy in reach[1]:
            for cz in reach[2]:
                point = pre.aligned_to_source.TransformPoint(aligned_img.TransformContinuousIndexToPhysicalPoint((cx, cy, cz)))
                corners.append(ref.TransformPhysicalPointToContinuousIndex(point))
    c = np.asarray(corners)
    full = np.asarray(ref.GetSize())
    lo = np.clip(np.floor(c.min(axis=0)).astype(int) - margin_vox, 0, full)
    hi = np.clip(np.ceil(c.max(axis=0)).astype(int) + margin_vox + 1, 0, full)
    if np.any(hi <= lo):
        return None  # the mask lies outside the series' field
    return (tuple(int(v) for v in lo), tuple(int(v) for v in hi - lo))  # type: ignore[return-value]


def to_aligned(pre: Preprocessed, source_img: sitk.Image, label: bool = False) -> sitk.Image:
    """A source-grid image resampled onto the aligned grid (anti-aliased when not a label)."""
    img = source_img if label else _antialias(sitk.Cast(source_img, sitk.sitkFloat32), ALIGNED_SPACING)
    return sitk.Resample(img, pre.aligned, pre.aligned_to_source, _interpolator(img, label), 0.0,
                         source_img.GetPixelID())
