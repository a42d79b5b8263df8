"""Region and infarct segmenters on the aligned grid: atlas SyN and asymmetry fallbacks, and the
TorchScript model paths (tiny hand-made models check layout, channel order and sides)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from aspects.errors import EXIT_USAGE, InputError
from aspects.model_io import from_model_layout, infarct_input, mirror, normalise, to_model_layout
from aspects.segmentation import (EDGE_FRACTION, EDGE_MIN_CORE_HU, INFARCT_MODEL, REGION_MODEL, SUPPORT_REACH_MM,
                                  SegmentationModels, consensus_components, declared_second_channel, lesion_edge,
                                  segment_infarct, segment_regions, trim_to_support)
from tests.support.heads import atlas, atlas_labels_on, dice, lesion_on_aligned, preprocessed


def test_model_layout_round_trip_and_window():
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert to_model_layout(a).shape == (4, 3, 2)
    np.testing.assert_array_equal(from_model_layout(to_model_layout(a)), a)
    np.testing.assert_array_equal(mirror(a), a[:, :, ::-1])
    np.testing.assert_allclose(normalise(np.array([-50.0, 0.0, 40.0, 80.0, 500.0])), [0, 0, 0.5, 1, 1])


@pytest.mark.slow
def test_atlas_regions_give_all_20_labels_on_the_right_sides():
    if not sitk.GetArrayViewFromImage(atlas().labels).any():
        pytest.skip("atlas not built (make atlas)")
    pre, _, _ = preprocessed(hu_drop=8.0)
    found = segment_regions(pre, atlas())
    labels = found.labels
    assert found.method == "atlas" and found.device == "cpu"
    assert found.levels == atlas().levels  # the scorer's source-slice blood search reads them
    arr = sitk.GetArrayFromImage(labels)
    assert labels.GetPixelID() == sitk.sitkUInt8 and labels.GetSize() == pre.aligned.GetSize()
    assert set(np.unique(arr)) == set(range(21))
    assert not arr[sitk.GetArrayFromImage(pre.brain_mask) == 0].any()
    half = arr.shape[2] // 2
    assert (arr[:, :, :half] <= 10).all() and (arr[:, :, half:] == 0).sum() + (arr[:, :, half:] > 10).sum() == arr[:, :, half:].size
    truth = atlas_labels_on(pre.aligned)
    scores = [dice(arr == v, truth == v) for v in range(1, 21)]
    assert np.mean(scores) > 0.7, np.round(scores, 2)


@pytest.mark.slow
def test_asymmetry_finds_a_hypodense_lesion_in_one_hemisphere():
    pre, _, _ = preprocessed(hu_drop=8.0)
    found = segment_infarct(pre)
    mask, method, info = found.mask, found.method, found.info
    assert method == "asymmetry" and found.device == "cpu"
    arr = sitk.GetArrayFromImage(mask) > 0
    truth = lesion_on_aligned(pre.aligned)
    assert dice(arr, truth) > 0.5, info
    assert info["side"] == "right"


@pytest.mark.slow
def test_asymmetry_finds_nothing_in_a_symmetric_head():
    pre, _, _ = preprocessed()
    info = segment_infarct(pre).info
    assert info["volume_ml"] < 2.0, info


class _MirrorDifference(torch.nn.Module):
    """Infarct 'model': class 1 where the mirror channel is brighter than the image by > 4 HU
    (after a 5-voxel mean), i.e. the asymmetry rule written as a network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.nn.functional.avg_pool3d(x[:, 1:2] - x[:, 0:1], 5, stride=1, padding=2) * 80.0 - 4.0
        return torch.cat([torch.zeros_like(d), d], dim=1)


class _HalfAndHalf(torch.nn.Module):
    """Region 'model': label 1 (right C) in the first half of X, 11 (left C) in the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2]
        out = torch.zeros(1, 21, x.shape[2], x.shape[3], x.shape[4], dtype=x.dtype)
        out[:, 1, : n // 2] = 1.0
        out[:, 11, n // 2:] = 1.0
        return out


def _save(model: torch.nn.Module, models_dir, name: str, second_channel: Optional[str] = None) -> None:
    """``second_channel``: declared in an embedded metadata.json as ``ckpt_export --meta_file`` embeds it."""
    folder = models_dir / name
    folder.mkdir(parents=True)
    extra = {}
    if second_channel is not None:
        meta = {"network_data_format": {"inputs": {"image": {"channel_def": {"0": "image", "1": second_channel}}}}}
        extra["metadata.json"] = json.dumps(meta)
    with warnings.catch_warnings():  # torch.jit.script is deprecated, TorchScript files are not
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(folder / f"{name}.ts"), _extra_files=extra)


@pytest.mark.slow
def test_torchscript_models_are_used_with_the_documented_layout(tmp_path):
    _save(_MirrorDifference(), tmp_path, INFARCT_MODEL)
    _save(_HalfAndHalf(), tmp_path, REGION_MODEL)
    pre, _, _ = preprocessed(hu_drop=8.0)
    models = SegmentationModels.from_folder(tmp_path, device="cpu")
    found = segment_infarct(pre, models.infarct)
    mask, method = found.mask, found.method
    assert method == "model" and found.device == "cpu"
    arr = sitk.GetArrayFromImage(mask) > 0
    truth = lesion_on_aligned(pre.aligned)
    assert arr[truth].mean() > 0.5  # found where the lesion is ...
    assert arr[np.flip(truth, axis=2)].mean() < 0.05  # ... not in its mirror region
    regions = segment_regions(pre, atlas(), models.regions)
    assert regions.method == "model" and regions.device == "cpu"
    labels = regions.labels
    lab = sitk.GetArrayFromImage(labels)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    half = lab.shape[2] // 2
    assert (lab[:, :, :half][brain[:, :, :half]] == 1).all() and (lab[:, :, half:][brain[:, :, half:]] == 11).all()


def test_consensus_keeps_only_components_the_baseline_supports():
    model = np.zeros((10, 10, 10), bool)
    model[1:3, 1:3, 1:3] = True  # supported by one baseline voxel
    model[6:9, 6:9, 6:9] = True  # no support: a false positive to drop
    support = np.zeros_like(model)
    support[2, 2, 2] = True
    support[5, 0, 0] = True  # baseline-only voxel: never added to the result
    kept, n_kept, n_dropped = consensus_components(model, support)
    assert (n_kept, n_dropped) == (1, 1)
    assert kept[1:3, 1:3, 1:3].all() and not kept[6:9, 6:9, 6:9].any() and not kept[5, 0, 0]
    empty, n0, d0 = consensus_components(np.zeros_like(model), support)
    assert not empty.any() and (n0, d0) == (0, 0)


def test_a_kept_component_is_cut_back_to_its_reach_around_the_baseline():
    model = np.zeros((6, 6, 40), bool)
    model[2:4, 2:4, 2:38] = True  # one component running 72 mm along x at 2 mm
    support = np.zeros_like(model)
    support[2:4, 2:4, 2:6] = True  # the bilateral comparison sees its first 8 mm
    kept, _, _ = consensus_components(model, support)
    assert kept.sum() == model.sum()  # the consensus alone keeps it whole
    cut = trim_to_support(kept, support, reach_mm=16.0, spacing_mm=2.0)
    xs = np.nonzero(cut.any(axis=(0, 1)))[0]
    assert (xs.min(), xs.max()) == (2, 5 + 8)  # 16 mm = 8 voxels past the support
    assert cut[2:4, 2:4, 2:14].all()
    assert trim_to_support(kept, support, reach_mm=1000.0).sum() == model.sum()
    assert not trim_to_support(kept, np.zeros_like(support)).any()
    assert SUPPORT_REACH_MM == 16.0  # the reach chosen on the v2 validation split (docs/results_v2.md)


def test_a_clear_lesion_ends_at_a_fraction_of_its_own_darkening_and_a_faint_one_is_left_whole():
    diff = np.zeros((12, 12, 40), np.float32)
    mask = np.zeros(diff.shape, bool)
    mask[4:8, 4:8, 2:20] = True  # one component: a 10 HU lesion with a 2 HU tail around it
    diff[4:8, 4:8, 2:12], diff[4:8, 4:8, 12:20] = 10.0, 2.0
    mask[4:8, 4:8, 24:38] = True  # a faint lesion: 4 HU core, 1 HU tail
    diff[4:8, 4:8, 24:32], diff[4:8, 4:8, 32:38] = 4.0, 1.0
    before = mask.copy()
    out = lesion_edge(mask, diff)
    assert np.array_equal(mask, before)  # the caller's mask is not changed
    assert out[4:8, 4:8, 2:12].all() and not out[4:8, 4:8, 12:20].any()  # 2 HU < 0.3 x 10 HU: cut
    assert out[4:8, 4:8, 24:38].all()  # core 4 HU < 5 HU: its edge is inside the noise, left whole
    diff[4:8, 4:8, 12:20] = 3.0  # exactly 0.3 x the core: kept
    assert lesion_edge(mask, diff)[4:8, 4:8, 12:20].all()
    assert not lesion_edge(mask, diff, fraction=0.5)[4:8, 4:8, 12:20].any()
    assert not lesion_edge(np.zeros_like(mask), diff).any()
    assert (EDGE_FRACTION, EDGE_MIN_CORE_HU) == (0.3, 5.0)  # chosen on the v2 validation split (docs/results_v2.md)


def test_aspects_json_records_the_lesion_edge_rule():
    from aspects.assess import ScoringSettings

    assert ScoringSettings(calibration=None).thresholds()["lesion_edge"] == {
        "fraction": 0.3, "min_core_hu": 5.0, "core_percentile": 75.0}
    assert ScoringSettings(calibration=None, edge_fraction=None).thresholds()["lesion_edge"] is None


class _Everywhere(torch.nn.Module):
    """Infarct 'model' that marks the whole volume: a false positive the consensus must drop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])], dim=1)


@pytest.mark.slow
def test_model_components_without_asymmetry_support_are_dropped(tmp_path):
    _save(_Everywhere(), tmp_path, INFARCT_MODEL)
    pre, _, _ = preprocessed()  # symmetric head: the baseline finds nothing
    found = segment_infarct(pre, SegmentationModels.from_folder(tmp_path, device="cpu").infarct)
    mask, method, info = found.mask, found.method, found.info
    assert method == "model"
    assert not sitk.GetArrayFromImage(mask).any()
    assert info["volume_ml"] == 0.0 and info["consensus"]["dropped_components"] >= 1
    assert info["consensus"]["dropped_ml"] > 500  # the whole brain was proposed and vetoed
    # the baseline's mask travels with the result for the scorer's growth (assess.assess_study)
    assert found.support is not None and found.support.shape == sitk.GetArrayFromImage(mask).shape
    assert not found.support.any()  # symmetric head


class _SecondIsNotTheMirror(torch.nn.Module):
    """Infarct 'model': class 1 wherever input channel 1 is not the x-flip of channel 0, i.e. it
    marks nothing when given the plain mirror and something when given the deformed one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x[:, 1:2] - torch.flip(x[:, 0:1], dims=[2])).abs() * 80.0 - 0.5
        return torch.cat([torch.zeros_like(d), d], dim=1)


def test_the_infarct_input_takes_the_deformed_counterpart_as_its_second_channel():
    rng = np.random.default_rng(0)
    hu, other = rng.uniform(0, 80, (6, 7, 8)).astype(np.float32), rng.uniform(0, 80, (6, 7, 8)).astype(np.float32)
    plain, deformed = infarct_input(hu), infarct_input(hu, other)
    assert plain.shape == deformed.shape == (1, 2, 8, 7, 6)
    assert np.array_equal(plain[0, 0], deformed[0, 0]) and np.array_equal(deformed[0, 0], normalise(to_model_layout(hu)))
    assert np.array_equal(plain[0, 1], normalise(to_model_layout(mirror(hu))))
    assert np.array_equal(deformed[0, 1], normalise(to_model_layout(other)))


def test_a_model_declares_its_second_channel_and_an_unknown_one_is_refused(tmp_path):
    assert declared_second_channel(Path("models") / INFARCT_MODEL / f"{INFARCT_MODEL}.ts") == "contra"  # shipped 0.5.0
    for folder, declared in (("plain", None), ("contra", "contra"), ("odd", "difference")):
        _save(_SecondIsNotTheMirror(), tmp_path / folder, INFARCT_MODEL, declared)
    assert SegmentationModels.from_folder(tmp_path / "plain", device="cpu").infarct.second_channel == "mirror"
    assert SegmentationModels.from_folder(tmp_path / "plain", device="cpu").infarct.version is None  # declares nothing
    assert SegmentationModels.from_folder(tmp_path / "contra", device="cpu").infarct.second_channel == "contra"
    with pytest.raises(InputError) as err:
        SegmentationModels.from_folder(tmp_path / "odd", device="cpu")
    assert err.value.code == EXIT_USAGE and "input channel 1 is declared as 'difference'" in err.value.message


def test_a_model_reports_the_bundle_version_it_declares():
    """aspects.json ``methods.infarct_model.version`` is what the exported bundle's metadata says
    (train/infarct_seg/configs/metadata.json, embedded by ckpt_export), None for a bare file."""
    bundle = json.loads((Path("train") / INFARCT_MODEL / "configs" / "metadata.json").read_text())["version"]
    shipped = SegmentationModels.from_folder(Path("models"), device="cpu").infarct
    assert shipped is not None and shipped.version == bundle


@pytest.mark.slow
def test_a_model_declaring_contra_is_given_the_deformed_mirror(tmp_path):
    pre, _, _ = preprocessed(hu_drop=8.0)
    found = {}
    for folder, declared in (("plain", None), ("contra", "contra")):
        _save(_SecondIsNotTheMirror(), tmp_path / folder, INFARCT_MODEL, declared)
        found[folder] = segment_infarct(pre, SegmentationModels.from_folder(tmp_path / folder, device="cpu").infarct)
    assert found["plain"].info["second_channel"] == "mirror" and found["plain"].info["consensus"]["kept_components"] == 0
    assert found["contra"].info["second_channel"] == "contra" and found["contra"].info["consensus"]["kept_components"] >= 1
    assert found["contra"].asymmetry.counterpart is not None
