"""The fast paths give the slow path's numbers (issue 14: same answers, faster)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage as ndi

from aspects import dicom_seg, preprocess, region_atlas, separable_resample
from tests.support.ct_series import make_ct_series, make_masks


def _smooth_volume(seed: int, shape=(48, 56, 48)) -> np.ndarray:
    """A brain-like HU volume on a 2 mm grid: smooth texture inside an ellipsoid, 0 outside."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = zz**2 / 0.6 + yy**2 / 0.7 + xx**2 / 0.6 < 1.0
    texture = ndi.gaussian_filter(rng.normal(0.0, 1.0, shape), 2.0)
    return np.where(inside, 30.0 + 40.0 * texture, 0.0).astype(np.float32)


def test_the_region_warp_optimiser_updates_exactly_as_torch_optim_adam(monkeypatch):
    """The LNCC fit's own Adam avoids importing torch.optim (torch._dynamo); its displacement
    field must be bit-identical to torch.optim.Adam's, or the regions would change."""
    image, template = _smooth_volume(1), _smooth_volume(2)
    ours = region_atlas.fit_displacement(image, template, steps=12)
    monkeypatch.setattr(region_atlas, "Adam", lambda param, lr: torch.optim.Adam([param], lr=lr))
    reference = region_atlas.fit_displacement(image, template, steps=12)
    assert ours.abs().max() > 0  # the fit moved: the comparison is not of two zero fields
    assert torch.equal(ours, reference)


def _segment_last_stack(infarct: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The plain (z, y, x, 21) bool stack the SEG was first built from (the slow path)."""
    out = np.empty(regions.shape + (dicom_seg.N_SEGMENTS,), dtype=bool)
    out[..., 0] = infarct.astype(bool)
    for label in range(1, 21):
        out[..., label] = regions == label
    return out


def test_the_seg_from_the_segment_major_stack_has_the_same_frames_as_from_the_plain_stack(monkeypatch):
    """The SEG's segment stack is built segment-major from the labelled voxels only (faster, and a
    thin study's empty pages cost no memory); a PACS must receive the same frames, bit for bit."""
    source = make_ct_series()
    infarct, regions = make_masks()
    fast = dicom_seg.segment_stack(infarct, regions)
    assert fast.shape == regions.shape + (dicom_seg.N_SEGMENTS,)
    assert np.array_equal(fast, _segment_last_stack(infarct, regions))
    ours = dicom_seg.build_segmentation(source, infarct, regions)
    monkeypatch.setattr(dicom_seg, "segment_stack", _segment_last_stack)
    reference = dicom_seg.build_segmentation(source, infarct, regions)
    assert int(ours.NumberOfFrames) == int(reference.NumberOfFrames) > 0
    assert ours.PixelData == reference.PixelData
    assert ours.SegmentsOverlap == reference.SegmentsOverlap == "YES"  # the infarct lies inside regions
    frames = lambda seg: [(f.FrameContentSequence[0].DimensionIndexValues,  # noqa: E731
                           f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
                          for f in seg.PerFrameFunctionalGroupsSequence]
    assert frames(ours) == frames(reference)


def _two_filter_path(img: sitk.Image, variance, ref: sitk.Image, clamp, default: float) -> sitk.Image:
    """The slow path: clamp, full-size discrete Gaussian, then linear resampling."""
    out = sitk.Clamp(img, sitk.sitkFloat32, *clamp)
    if np.any(np.asarray(variance) > 0.01):
        out = sitk.DiscreteGaussian(out, [float(v) for v in variance], 32, 0.01, True)
    return sitk.Resample(out, ref, sitk.Transform(), sitk.sitkLinear, default, sitk.sitkFloat32)


@pytest.mark.parametrize("spacing", [(0.45, 0.5, 0.625), (0.98, 0.98, 5.0), (2.5, 2.5, 3.0)])
def test_the_axis_by_axis_antialiased_resampling_equals_gaussian_then_resample(spacing):
    """The working grid is computed axis by axis (a thin study's full-size Gaussian was its
    slowest step); the numbers must be those of clamp + DiscreteGaussian + Resample to float32
    rounding, edges and the samples outside the image included."""
    rng = np.random.default_rng(4)
    arr = ndi.gaussian_filter(rng.normal(0, 1, (23, 41, 37)), 1.5) * 400 + rng.normal(0, 30, (23, 41, 37))
    arr[:, :, :5] = -3024.0  # padding below the clamp range
    arr[10:14, 20:30, 15:25] = 3500.0  # and above it
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    rot = sitk.VersorTransform((0.1, 0.3, 0.2), 0.5)  # an oblique series
    img.SetDirection(rot.GetMatrix())
    img.SetOrigin((-10.0, 5.0, 40.0))
    ref = sitk.Image([9, 13, 11], sitk.sitkFloat32)
    ref.SetSpacing((2.0, 2.0, 2.0))
    ref.SetDirection(img.GetDirection())
    ref.SetOrigin(img.TransformContinuousIndexToPhysicalPoint((0.9, -1.2, 0.7)))  # partly outside the image
    variance = preprocess._antialias_variance(spacing, 2.0)
    fast = sitk.GetArrayFromImage(separable_resample.smooth_and_resample(img, variance, ref, (-1024.0, 3071.0), -1024.0))
    slow = sitk.GetArrayFromImage(_two_filter_path(img, variance, ref, (-1024.0, 3071.0), -1024.0))
    assert (slow == -1024.0).sum() > 0 and (slow > -1000).sum() > 0.3 * slow.size  # edges and content both sampled
    ulp = float(np.spacing(np.float32(np.abs(slow).max())))
    assert np.abs(fast - slow).max() <= 4 * ulp  # float32 rounding, not a different filter
    assert np.array_equal(fast == -1024.0, slow == -1024.0)


def test_the_working_grid_is_the_axis_by_axis_resampling_of_the_series():
    """preprocess.to_working_grid uses the fast path with the variance of preprocess._antialias."""
    rng = np.random.default_rng(5)
    img = sitk.GetImageFromArray((rng.normal(30, 20, (30, 64, 64))).astype(np.float32))
    img.SetSpacing((0.45, 0.45, 0.625))
    work = preprocess.to_working_grid(img)
    slow = _two_filter_path(img, preprocess._antialias_variance(img.GetSpacing(), preprocess.WORK_SPACING), work,
                            preprocess.HU_CLIP, preprocess.AIR_HU)
    assert np.abs(sitk.GetArrayFromImage(work) - sitk.GetArrayFromImage(slow)).max() < 1e-3
