"""The fast paths give the slow path's numbers (issue 14: same answers, faster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage as ndi

from aspects import dicom_seg, region_atlas
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


def _segment_last_stack(infarct: np.ndarray, regions: np.ndarray, findings=()) -> np.ndarray:
    """The plain (z, y, x, 21 + findings) bool stack the SEG was first built from (the slow path)."""
    out = np.empty(regions.shape + (dicom_seg.N_SEGMENTS + len(findings),), dtype=bool)
    out[..., 0] = infarct.astype(bool)
    for label in range(1, 21):
        out[..., label] = regions == label
    for k, mask in enumerate(findings, start=dicom_seg.N_SEGMENTS):
        out[..., k] = mask
    return out


def test_the_seg_from_the_segment_major_stack_has_the_same_frames_as_from_the_plain_stack(monkeypatch):
    """The SEG's segment stack is built segment-major from the labelled voxels only, and its
    overlap is counted in 8 bits (faster; a thin study's empty pages and highdicom's 64-bit sum
    cost no memory); a PACS must receive the same frames and attributes, bit for bit."""
    source = make_ct_series()
    infarct, regions = make_masks()
    fast = dicom_seg.segment_stack(infarct, regions)
    assert fast.shape == regions.shape + (dicom_seg.N_SEGMENTS,)
    assert np.array_equal(fast, _segment_last_stack(infarct, regions))
    ours = dicom_seg.build_segmentation(source, infarct, regions)
    assert dicom_seg.build_segmentation(source, np.zeros_like(infarct), regions).SegmentsOverlap == "NO"  # regions alone
    monkeypatch.setattr(dicom_seg, "segment_stack", _segment_last_stack)
    monkeypatch.setattr(dicom_seg, "_Segmentation", dicom_seg.hd.seg.Segmentation)  # highdicom's own checks
    reference = dicom_seg.build_segmentation(source, infarct, regions)
    assert int(ours.NumberOfFrames) == int(reference.NumberOfFrames) > 0
    assert ours.PixelData == reference.PixelData
    assert ours.SegmentsOverlap == reference.SegmentsOverlap == "YES"  # the infarct lies inside regions
    frames = lambda seg: [(f.FrameContentSequence[0].DimensionIndexValues,  # noqa: E731
                           f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
                          for f in seg.PerFrameFunctionalGroupsSequence]
    assert frames(ours) == frames(reference)
    # with a located finding (its own segment 22, on slices of its own too): the same again
    blood = np.zeros_like(infarct, dtype=bool)
    blood[0, 2:5, 3:6] = True
    monkeypatch.undo()
    ours = dicom_seg.build_segmentation(source, infarct, regions, findings={"haemorrhage_suspected": blood})
    monkeypatch.setattr(dicom_seg, "segment_stack", _segment_last_stack)
    monkeypatch.setattr(dicom_seg, "_Segmentation", dicom_seg.hd.seg.Segmentation)
    reference = dicom_seg.build_segmentation(source, infarct, regions, findings={"haemorrhage_suspected": blood})
    assert len(ours.SegmentSequence) == dicom_seg.N_SEGMENTS + 1
    assert ours.PixelData == reference.PixelData and frames(ours) == frames(reference)



@pytest.mark.slow
def test_a_registration_in_a_forked_child_gives_the_same_transform_and_warp(monkeypatch):
    """ANTs runs in a forked child so that the other stages' threads are not stopped by the GIL
    it holds; the child must compute exactly what the calling thread computed (the contract of
    one-thread ANTs: bit-for-bit repeatable)."""
    from aspects import registration
    from aspects.asymmetry import contralateral
    from aspects.preprocess import preprocess
    from tests.support.heads import atlas, synthetic_head

    ct, _ = synthetic_head(hu_drop=6.0)
    results = {}
    for fork in (True, False):
        monkeypatch.setattr(registration, "FORK_ANTS", fork)
        pre = preprocess(ct, atlas())
        hu = sitk.GetArrayFromImage(pre.aligned)
        results[fork] = (pre.aligned_to_source.GetParameters(), contralateral(hu, sitk.GetArrayFromImage(pre.brain_mask) > 0))
    assert results[True][0] == results[False][0]  # the affine, exactly
    assert np.array_equal(results[True][1][0], results[False][1][0])  # the mirror image warped by SyN
    assert np.array_equal(results[True][1][1], results[False][1][1])
    assert results[True][1][1].any()


_SYN_ON_THREADS = r"""
import json, sys
import numpy as np, SimpleITK as sitk
from scipy import ndimage as ndi
from aspects import registration as R

rng = np.random.default_rng(3)
g = ndi.gaussian_filter(rng.normal(0, 1, (40, 44, 40)), 3)
fixed = (30 + 10 * g / g.std()).astype(np.float32)
grid = np.meshgrid(*(np.arange(n, dtype=float) for n in fixed.shape), indexing="ij")
shift = [ndi.gaussian_filter(rng.normal(0, 1, fixed.shape), 6) * 40 for _ in range(3)]  # up to ~2 voxels
moving = ndi.map_coordinates(fixed, [a + d for a, d in zip(grid, shift)], order=1, mode="nearest").astype(np.float32)

def image(x):
    img = sitk.GetImageFromArray(x)
    img.SetSpacing((2.0, 2.0, 2.0))
    return img

run, seen = R._run_ants, []
def spy(build, threads=None, then=None):  # the registration process's thread count, after the run
    def after():
        then()
        status = [line for line in open("/proc/self/status") if line.startswith("Threads:")]
        print(json.dumps({"threads": threads, "os_threads": int(status[0].split()[1])}), flush=True)
    run(build, threads, after)
R._run_ants = spy
out = {}
for threads in (1, 2, 1, 2):
    warped = R.syn_warp(image(fixed), image(moving), [image(moving)], [False], iterations=(30, 10), shrink=(2, 1),
                        smooth_vox=(1, 0), metric="CC[{f},{m},1,1]", params="SyN[0.2,4,1]", threads=threads)
    out.setdefault(threads, []).append(sitk.GetArrayFromImage(warped[0]))
same = all(np.array_equal(x, out[1][0]) for runs in out.values() for x in runs)
print(json.dumps({"same": same, "before": float(np.abs(moving - fixed).mean()),
                  "after": float(np.abs(out[1][0] - fixed).mean())}))
"""


@pytest.mark.skipif(not (hasattr(os, "fork") and Path("/proc/self/status").is_file()), reason="Linux fork and /proc")
def test_the_mirror_syn_gives_the_same_field_on_one_and_two_threads():
    """The deformable registration (local cross-correlation, as the asymmetry baseline's mirror
    SyN) runs on 2 threads in its own child (registration.SYN_THREADS): its warp must equal the
    one-thread warp bit for bit, and the child must really have run the extra ITK thread. A fresh
    interpreter, so that the child is the first user of the ANTs library's ITK (as in the app)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), ASPECTS_ANTS_FORK="1")
    res = subprocess.run([sys.executable, "-c", _SYN_ON_THREADS], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    runs, summary = lines[:-1], lines[-1]
    by_threads = {r["threads"]: r["os_threads"] for r in runs}
    assert by_threads[2] > by_threads[1]  # ITK's pool started a second worker in the 2-thread child
    assert summary["same"]
    assert summary["after"] < 0.8 * summary["before"]  # a real deformation was found, not the identity


def test_a_failing_registration_in_the_child_is_an_error_in_the_app(monkeypatch):
    """A non-zero exit, an exception or a crash in the forked child reaches the caller as a
    RegistrationError (preprocess turns it into exit 7), never as a silent success."""
    from aspects import registration

    assert registration._in_child(lambda: 0) == 0
    assert registration._in_child(lambda: 3) == 3
    assert registration._in_child(lambda: 1 // 0) == 1
    assert registration._in_child(lambda: os.kill(os.getpid(), signal.SIGKILL) or 0) == -signal.SIGKILL
    monkeypatch.setattr(registration, "FORK_ANTS", True)
    with pytest.raises(registration.RegistrationError, match="exited with"):
        registration._run_ants(lambda: ["--dimensionality", "3", "--no-such-option", "1"])


def test_the_region_labels_one_hot_keeps_every_label_where_the_field_is_zero():
    """The atlas labels go through the field as float one-hot channels written in place (no int64
    one-hot copy); with no displacement and the label grid itself as target every voxel keeps
    its label, so a channel written to the wrong label would show."""
    rng = np.random.default_rng(6)
    lab = ndi.zoom(rng.integers(0, 21, (6, 7, 6)).astype(np.uint8), 4, order=0)  # blocks of 4 voxels
    lab[:2], lab[-2:] = 0, 0
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing((2.0, 2.0, 2.0))
    img.SetOrigin((-10.0, 4.0, 7.0))
    out = region_atlas.warp_atlas_labels(img, img, torch.zeros(1, 3, 3, 3, 3), 21)
    assert np.array_equal(out, lab)
    assert len(np.unique(lab)) > 15


@pytest.mark.parametrize("spacing", [(0.45, 0.45, 0.625), (0.9, 0.9, 1.0), (0.5, 0.5, 5.0), (0.5, 0.6, 2.5)])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_numpy_antialiasing_equals_itks_filter_bit_for_bit(spacing, threads):
    """The working grid's Gaussian is computed by aspects.gaussian (NumPy, slabs on two threads)
    instead of ITK's DiscreteGaussian; every voxel must equal ITK's, bit for bit, or ANTs would
    register differently. Slice counts that are not a multiple of the slab, padding below the
    clamp range, and a thick axis that is not smoothed are included."""
    from aspects import gaussian, preprocess

    rng = np.random.default_rng(7)
    arr = ndi.gaussian_filter(rng.normal(0, 1, (gaussian.SLAB * 3 + 5, 24, 20)), 1.0) * 500
    arr[:, :, :3] = -3024.0  # below the clamp range, as CT padding is
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    var = preprocess._antialias_variance(img, preprocess.WORK_SPACING)
    itk = sitk.GetArrayFromImage(gaussian.itk_gaussian(sitk.Clamp(img, sitk.sitkFloat32, *preprocess.HU_CLIP), var))
    ours = gaussian.discrete_gaussian(sitk.GetArrayViewFromImage(img), spacing, var, preprocess.HU_CLIP, threads=threads)
    assert ours.tobytes() == itk.tobytes()
    assert not np.array_equal(itk, np.clip(arr, *preprocess.HU_CLIP).astype(np.float32))  # it did smooth
    app = sitk.GetArrayFromImage(preprocess._clamped_antialias(img, preprocess.WORK_SPACING))
    assert app.tobytes() == itk.tobytes()


def test_the_antialiasing_falls_back_to_itk_where_the_numpy_gaussian_differs(monkeypatch):
    """On an ITK whose arithmetic the NumPy Gaussian does not reproduce, the self-check fails and
    the app keeps ITK's filter (same working grid), with a warning."""
    from aspects import gaussian, preprocess

    exact = gaussian.discrete_gaussian
    monkeypatch.setattr(gaussian, "discrete_gaussian", lambda *a, **k: np.nextafter(exact(*a, **k), np.float32(np.inf)))
    gaussian.matches_itk.cache_clear()
    try:
        assert not gaussian.matches_itk()
        rng = np.random.default_rng(3)
        img = sitk.GetImageFromArray(rng.normal(30, 20, (12, 16, 14)).astype(np.float32))
        img.SetSpacing((0.5, 0.5, 0.625))
        var = preprocess._antialias_variance(img, preprocess.WORK_SPACING)
        got = sitk.GetArrayFromImage(preprocess._clamped_antialias(img, preprocess.WORK_SPACING))
        want = sitk.GetArrayFromImage(gaussian.itk_gaussian(sitk.Clamp(img, sitk.sitkFloat32, *preprocess.HU_CLIP), var))
        assert got.tobytes() == want.tobytes()
    finally:
        monkeypatch.undo()
        gaussian.matches_itk.cache_clear()
    assert gaussian.matches_itk()


def test_key_slices_from_per_slice_histograms_are_the_documented_choice():
    # choose_key_slices counts labels slice by slice (bincount) instead of whole-volume np.isin;
    # the chosen slices must be the documented ones (every region of the level shown, then the
    # largest area; fallbacks), here recomputed region by region with np.isin on random label
    # maps including empty levels and empty maps.
    from aspects.key_images import LEVEL_REGIONS, LEVELS, SHOWN_SHARE, _labels_of, choose_key_slices

    rng = np.random.default_rng(7)
    for _ in range(200):
        regions = np.zeros((int(rng.integers(1, 10)), int(rng.integers(1, 7)), int(rng.integers(1, 7))), np.uint8)
        hit = rng.random(regions.shape) < rng.random()
        regions[hit] = rng.integers(0, 21, int(hit.sum()))
        labelled = (regions > 0).sum(axis=(1, 2))
        fallback = int(np.argmax(labelled)) if labelled.any() else regions.shape[0] // 2
        expected = {}
        for level in LEVELS:
            labels = _labels_of(LEVEL_REGIONS[level])
            area = np.isin(regions, labels).sum(axis=(1, 2))
            if not area.any():
                expected[level] = fallback
                continue
            score = np.zeros(regions.shape[0])
            for v in labels:
                per_slice = (regions == v).sum(axis=(1, 2))
                if per_slice.max() > 0:
                    score += np.minimum(per_slice / (SHOWN_SHARE * per_slice.max()), 1.0)
            tied = [k for k in range(regions.shape[0]) if score[k] >= score.max() - 1e-9]
            expected[level] = max(tied, key=lambda k: (area[k], -k))
        assert choose_key_slices(regions) == expected


@pytest.mark.parametrize("per_slice", [False, True])
def test_region_infarct_volumes_count_only_the_infarct_voxels_of_each_region(per_slice):
    # region_findings counts each region's infarct voxels from the infarct's own slices (no
    # whole-volume np.where copy on a thin study); the ml per region must be the voxels' volumes.
    from aspects.labels import SIDES, label_value
    from aspects.scoring import REGION_CODES, region_findings

    rng = np.random.default_rng(11)
    regions = np.zeros((30, 40, 50), np.uint8)
    regions[5:25] = rng.integers(0, 21, (20, 40, 50))
    infarct = np.zeros(regions.shape, np.uint8)
    infarct[8:14, 10:30, 5:40] = 1  # slices 0-7 and 14-29 have no infarct
    vml = rng.uniform(0.05, 0.2, 30) if per_slice else 0.008
    found = region_findings(regions, infarct, vml, 0.2)
    weight = np.broadcast_to(np.reshape(vml, (-1, 1, 1)) if per_slice else np.full((1, 1, 1), vml), regions.shape)
    for side in SIDES:
        for code in REGION_CODES:
            v = label_value(side, code)
            f = found[side][code]
            assert f.infarct_ml == pytest.approx(float(weight[(regions == v) & (infarct > 0)].sum()), rel=1e-12)
            assert f.region_ml == pytest.approx(float(weight[regions == v].sum()), rel=1e-12)
            assert f.infarct_ml > 0


def test_a_float_image_and_its_writable_view_share_pixels_and_the_view_keeps_the_image_alive():
    # aspects.volume.float_image: the HU volume and the working grid's Gaussian are written into
    # the SimpleITK image's own buffer (no GetImageFromArray copy of a thin study).
    import gc

    from aspects.volume import float_image

    img, pixels = float_image((3, 4, 5))
    assert img.GetSize() == (5, 4, 3) and pixels.shape == (3, 4, 5) and pixels.flags.writeable
    pixels[...] = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    assert img[4, 3, 2] == 59.0 and np.array_equal(sitk.GetArrayViewFromImage(img), pixels)
    del img
    gc.collect()
    assert float(pixels.sum()) == float(np.arange(60).sum())  # still the image's memory, still valid


def test_the_series_hu_volume_filled_in_place_equals_the_copied_one(phantom_case):
    # load_series decodes the slices straight into the image's pixels; the volume must be what
    # hu_stack + on_grid (a copy) gave: same HU, same geometry.
    from aspects.dicom_geometry import SliceGeometry
    from aspects.series import hu_stack, read_study
    from aspects.volume import on_grid, stack_grid

    series = read_study(phantom_case(31, thickness=5.0) / "dicom")
    copied = on_grid(hu_stack(series.datasets), stack_grid(SliceGeometry.from_datasets(series.datasets)))
    got = series.volume.image
    assert sitk.GetArrayViewFromImage(got).tobytes() == sitk.GetArrayViewFromImage(copied).tobytes()
    assert (got.GetOrigin(), got.GetSpacing(), got.GetDirection()) == \
        (copied.GetOrigin(), copied.GetSpacing(), copied.GetDirection())
    assert not series.volume.resampled and float(sitk.GetArrayViewFromImage(got).max()) > 100.0


@pytest.mark.parametrize("classes", [2, 3, 21])
def test_the_first_argmax_labels_equal_torchs_argmax_ties_included(classes):
    from aspects.inference import first_argmax

    rng = np.random.default_rng(classes)
    # coarse values: many voxels where two or more classes tie for the largest value
    prob = torch.from_numpy(rng.integers(0, 4, (classes, 9, 10, 11)).astype(np.float32))
    assert (prob.max(0).values == prob.sort(0).values[-2]).any()  # ties are there
    assert torch.equal(first_argmax(prob), torch.argmax(prob, dim=0))
    soft = torch.softmax(torch.from_numpy(rng.normal(0, 3, (classes, 20, 21, 22)).astype(np.float32)), dim=0)
    assert torch.equal(first_argmax(soft), torch.argmax(soft, dim=0))


def _scanned_field_whole(ref, a2s, geometry) -> np.ndarray:
    """The scanned field computed on the whole grid at once (the implementation before session 29)."""
    size = ref.GetSize()
    zz, yy, xx = np.meshgrid(*(np.arange(n, dtype=float) for n in size[::-1]), indexing="ij")
    idx = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    d = np.asarray(ref.GetDirection()).reshape(3, 3) * np.asarray(ref.GetSpacing())[None, :]
    aligned_pts = idx @ d.T + np.asarray(ref.GetOrigin())
    m = np.asarray(a2s.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(a2s.GetCenter()), np.asarray(a2s.GetTranslation())
    return geometry.contains((aligned_pts - c) @ m.T + c + t).reshape(size[::-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_scanned_field_slab_by_slab_equals_the_whole_grid_at_once(seed):
    from aspects.dicom_geometry import SliceGeometry
    from aspects.preprocess import scanned_field

    rng = np.random.default_rng(seed)
    tilt = np.radians(rng.uniform(0, 25))  # a gantry-tilted series: slice origins sheared along y
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(tilt), np.sin(tilt)])
    n_slices, step = int(rng.integers(8, 16)), rng.uniform(2.0, 5.0)
    origins = np.array([[-60.0, -70.0 + k * step * np.tan(tilt), -30.0 + k * step] for k in range(n_slices)])
    geometry = SliceGeometry(origins=origins, row_dir=row, col_dir=col, pixel_mm=(0.5, 0.5), shape=(256, 250),
                             thickness_mm=(step,) * n_slices)
    ref = sitk.Image([int(v) for v in rng.integers(30, 45, 3)], sitk.sitkFloat32)  # slices not a multiple of the slab
    ref.SetSpacing([2.0, 2.0, 2.0])
    ref.SetOrigin([-40.0, -50.0, -20.0])
    a2s = sitk.AffineTransform(3)
    a2s.SetMatrix((np.eye(3) + rng.normal(0, 0.05, (3, 3))).ravel().tolist())
    a2s.SetCenter(rng.normal(0, 10, 3).tolist())
    a2s.SetTranslation(rng.normal(0, 8, 3).tolist())
    got = scanned_field(ref, a2s, geometry, sitk.Image(8, 8, 8, sitk.sitkFloat32))
    want = _scanned_field_whole(ref, a2s, geometry)
    assert 0 < want.sum() < want.size  # the slab's edges cross the grid
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_the_support_trim_on_the_masks_box_equals_the_whole_grid(seed):
    from aspects.segmentation import trim_to_support

    rng = np.random.default_rng(seed)
    shape = (40, 48, 44)
    def blobs(level: float) -> np.ndarray:
        field = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
        return field > level * field.std()

    mask = blobs(1.5)
    mask[:, :, :20] = False  # the mask on one side, support everywhere: some of it outside the box
    support = blobs(2.0)
    reach = float(rng.choice([4.0, 6.0, 16.0]))
    whole = mask & (ndi.distance_transform_edt(~support, sampling=2.0) <= reach)
    got = trim_to_support(mask, support, reach_mm=reach, spacing_mm=2.0)
    assert 0 < whole.sum() < mask.sum()
    assert np.array_equal(got, whole)
    far = np.zeros(shape, bool)
    far[:, :, :2] = True  # support only beyond the reach of every mask voxel
    assert not trim_to_support(mask, far, reach_mm=4.0, spacing_mm=2.0).any()
