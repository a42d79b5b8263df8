"""The committed ASPECTS atlas (atlas/): labels, volumes, symmetry, geometry, loader errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from aspects import labels as L
from aspects.atlas import (LABEL_TABLE_FILE, LEVELS_FILE, TERRITORY_GROUPS, Atlas, default_atlas_dir, load_atlas,
                           mca_territory, outside_mca, region_volumes_ml)
from aspects.errors import EXIT_PROCESSING, InputError

# Plausible volume (ml) of each region per hemisphere: spanning this atlas and the published OpenADS
# atlas (Liu et al. 2023); sources and rationale in docs/atlas.md. They catch a broken build.
VOLUME_RANGES_ML = {
    "C": (3.0, 8.0),
    "L": (4.5, 10.0),
    "IC": (3.0, 9.0),
    "I": (4.0, 15.0),
    "M1": (25.0, 60.0),
    "M2": (8.0, 40.0),
    "M3": (15.0, 45.0),
    "M4": (10.0, 35.0),
    "M5": (5.0, 30.0),
    "M6": (5.0, 30.0),
}
MIN_M1_MIDLINE_MM = 15.0  # 99 % of M1 / M4 voxels at least this far from the midline (ACA cortex lies nearer)
MIN_M3_POLE_MM = 25.0  # M3 / M6 end at least this far in front of the occipital pole (PCA cortex behind)

ATLAS_DIR = Path(__file__).resolve().parent.parent / "atlas"


@pytest.fixture(scope="module")
def atlas() -> Atlas:
    return load_atlas(ATLAS_DIR)


@pytest.fixture(scope="module")
def label_arr(atlas: Atlas) -> np.ndarray:
    return sitk.GetArrayFromImage(atlas.labels)


@pytest.fixture(scope="module")
def volumes(atlas: Atlas) -> dict:
    return region_volumes_ml(atlas.labels)


def test_all_20_labels_and_nothing_else(label_arr: np.ndarray) -> None:
    assert set(np.unique(label_arr).tolist()) == set(range(21))


def test_labels_json_is_the_project_table() -> None:
    assert json.loads((ATLAS_DIR / LABEL_TABLE_FILE).read_text()) == L.label_table()


@pytest.mark.parametrize("code", L.REGION_CODES)
def test_left_right_volumes_agree(volumes: dict, code: str) -> None:
    right, left = volumes[L.label_value("right", code)], volumes[L.label_value("left", code)]
    assert abs(right - left) <= 0.15 * max(right, left), (code, right, left)


@pytest.mark.parametrize("code", L.REGION_CODES)
def test_region_volume_in_documented_range(volumes: dict, code: str) -> None:
    lo, hi = VOLUME_RANGES_ML[code]
    for side in L.SIDES:
        assert lo <= volumes[L.label_value(side, code)] <= hi, (side, code, volumes[L.label_value(side, code)])


def test_grid_header(atlas: Atlas) -> None:
    for img in (atlas.template, atlas.labels):
        assert img.GetSpacing() == (1.0, 1.0, 1.0)
        assert img.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert atlas.template.GetOrigin() == atlas.labels.GetOrigin()
    nx = atlas.labels.GetSize()[0]
    # the grid's central sagittal plane is at physical x = 0
    centre = atlas.labels.TransformContinuousIndexToPhysicalPoint(((nx - 1) / 2.0, 0.0, 0.0))
    assert centre[0] == pytest.approx(0.0, abs=1e-6)


def test_right_hemisphere_at_negative_lps_x(atlas: Atlas, label_arr: np.ndarray) -> None:
    xs = np.asarray([atlas.labels.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(label_arr.shape[2])])
    for v in range(1, 21):
        mean_x = xs[np.nonzero(label_arr == v)[2]].mean()
        assert (mean_x < 0) if v <= 10 else (mean_x > 0), (v, mean_x)


def test_flip_is_the_contralateral_mirror(atlas: Atlas, label_arr: np.ndarray) -> None:
    t = sitk.GetArrayFromImage(atlas.template)
    assert np.array_equal(t, np.flip(t, axis=2))
    mirrored = np.flip(label_arr, axis=2).astype(int)
    swapped = np.where(mirrored > 0, (mirrored - 1 + 10) % 20 + 1, 0)
    assert np.array_equal(swapped, label_arr)


def test_template_is_brain_ct_in_hu(atlas: Atlas, label_arr: np.ndarray) -> None:
    t = sitk.GetArrayFromImage(atlas.template)
    assert t.dtype == np.float32 and t.min() >= 0 and t.max() < 150
    assert 1000 < np.count_nonzero(t) / 1000 < 1800  # brain volume (ml) of an adult, CSF rim included
    lentiform = np.isin(label_arr, (2, 12))
    capsule = np.isin(label_arr, (3, 13))
    assert t[lentiform].mean() > t[capsule].mean() + 2  # grey nuclei brighter than the capsule
    assert np.all(t[label_arr > 0] > 0)  # every region lies inside the brain


def test_regions_lie_in_their_slabs(atlas: Atlas, label_arr: np.ndarray) -> None:
    z_mm = np.asarray([atlas.labels.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(label_arr.shape[0])])
    bg, sg = atlas.levels["BG"], atlas.levels["SG"]
    assert bg[0] < bg[1] < sg[0] < sg[1]
    for code in ("M1", "M2", "M3", "IC"):
        z = z_mm[np.nonzero(label_arr == L.label_value("right", code))[0]]
        assert bg[0] <= z.min() and z.max() <= bg[1], code
    for code in ("M4", "M5", "M6"):
        z = z_mm[np.nonzero(label_arr == L.label_value("right", code))[0]]
        assert sg[0] <= z.min() and z.max() <= sg[1], code


def test_anterior_lateral_posterior_order(atlas: Atlas, label_arr: np.ndarray) -> None:
    """M1 / M4 anterior (smaller LPS y) to M2 / M5, anterior to M3 / M6."""
    def mean_y(code: str) -> float:
        return float(np.nonzero(label_arr == L.label_value("right", code))[1].mean())

    assert mean_y("M1") < mean_y("M2") < mean_y("M3")
    assert mean_y("M4") < mean_y("M5") < mean_y("M6")
    assert mean_y("C") < mean_y("L")  # caudate head in front of the lentiform centre


def test_levels_json_matches_loader(atlas: Atlas) -> None:
    data = json.loads((ATLAS_DIR / LEVELS_FILE).read_text())
    for name in ("BG", "SG"):
        assert atlas.levels[name] == (data[name]["z_min_mm"], data[name]["z_max_mm"])
        assert data[name]["derivation"]


def test_missing_atlas_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_atlas(tmp_path / "nowhere")
    assert err.value.code == EXIT_PROCESSING
    assert "atlas not found" in err.value.message and "make atlas" in err.value.message


def test_incomplete_atlas_names_the_missing_file(tmp_path: Path) -> None:
    for name in ("template_ncct_1mm.nii.gz", "territories.nii.gz", "labels.json", "levels.json"):
        shutil.copy(ATLAS_DIR / name, tmp_path / name)
    with pytest.raises(InputError, match="aspects_atlas.nii.gz"):
        load_atlas(tmp_path)


def test_default_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASPECTS_ATLAS_DIR", str(tmp_path))
    assert default_atlas_dir() == tmp_path
    monkeypatch.delenv("ASPECTS_ATLAS_DIR")
    assert default_atlas_dir() == ATLAS_DIR


def test_territories_are_symmetric_and_cover_the_brain(atlas: Atlas) -> None:
    terr = sitk.GetArrayFromImage(atlas.territories).astype(int)
    mirrored = np.flip(terr, axis=2)
    # level-1 labels: even = right, odd = left; the mirror of a right label is the left one (- 1)
    expected = np.where(mirrored > 0, np.where(mirrored % 2 == 0, mirrored - 1, mirrored + 1), 0)
    assert np.array_equal(terr, expected)
    brain = sitk.GetArrayFromImage(atlas.template) > 0
    assert np.count_nonzero(terr[brain]) / np.count_nonzero(brain) > 0.9
    for group, values in TERRITORY_GROUPS.items():
        assert np.isin(terr, values).sum() / 1000 > 20, group  # each major territory present (ml)


def test_every_region_lies_in_the_mca_territory(atlas: Atlas, label_arr: np.ndarray) -> None:
    """ASPECTS scores the MCA territory only: no cortical region voxel (I, M1-M6) outside it. (The
    deep regions follow anatomy: the caudate head is partly supplied by Heubner's artery, counted
    as ACA, and the posterior limb of the capsule by the anterior choroidal artery.)"""
    terr = sitk.GetArrayFromImage(atlas.territories)
    cortical = np.isin(label_arr, [L.label_value(s, c) for s in L.SIDES for c in ("I", "M1", "M2", "M3", "M4", "M5", "M6")])
    assert mca_territory(terr[cortical]).all()
    assert not outside_mca(terr[cortical]).any()


def test_m_regions_keep_off_the_midline_and_the_occipital_pole(atlas: Atlas, label_arr: np.ndarray) -> None:
    """The issue's findings on atlas v1: M1 within 14 mm of the midline (ACA cortex) and M3 within
    18 mm of the occipital pole (PCA cortex). In v2 the MCA territory bounds them."""
    x_mm = atlas.labels.GetOrigin()[0] + np.arange(label_arr.shape[2])
    y_mm = atlas.labels.GetOrigin()[1] + np.arange(label_arr.shape[1])
    brain = sitk.GetArrayFromImage(atlas.template) > 0
    occipital_pole = y_mm[np.nonzero(brain.any(axis=(0, 2)))[0].max()]
    for code in ("M1", "M4"):
        xs = np.nonzero(label_arr == L.label_value("right", code))[2]
        assert np.percentile(np.abs(x_mm[xs]), 1) >= MIN_M1_MIDLINE_MM, code
    for code in ("M3", "M6"):
        ys = np.nonzero(label_arr == L.label_value("right", code))[1]
        assert occipital_pole - y_mm[ys].max() >= MIN_M3_POLE_MM, code


@pytest.mark.slow
def test_lncc_atlas_warp_recovers_a_known_displacement(atlas: Atlas) -> None:
    """The region path without a model (aspects.region_atlas): a 'patient' that is the aligned
    template moved 6 mm backwards and 4 mm to the side gets the atlas regions moved with it."""
    from types import SimpleNamespace

    from aspects.preprocess import template_on_aligned
    from aspects.region_atlas import atlas_on_aligned, atlas_regions

    template = template_on_aligned(atlas.template)
    t = sitk.GetArrayFromImage(template)
    shift = (0, 3, 2)  # aligned voxels of 2 mm (z, y, x)
    moved = np.roll(t, shift, axis=(0, 1, 2))
    patient = sitk.GetImageFromArray(moved)
    patient.CopyInformation(template)
    brain = sitk.Cast(patient > 0, sitk.sitkUInt8)
    pre = SimpleNamespace(aligned=patient, template=template, brain_mask=brain)
    labels, _ = atlas_on_aligned(pre, atlas)
    truth = np.roll(labels, shift, axis=(0, 1, 2))
    truth[moved == 0] = 0

    def mean_dice(a: np.ndarray) -> float:
        return float(np.mean([2 * np.sum((a == v) & (truth == v)) / max(1, np.sum(a == v) + np.sum(truth == v))
                              for v in range(1, 21)]))

    warped = sitk.GetArrayFromImage(atlas_regions(pre, atlas))
    assert set(np.unique(warped)) == set(range(21))
    assert mean_dice(np.where(moved > 0, labels, 0)) < 0.75  # the affine-only atlas misses by 7 mm
    assert mean_dice(warped) > 0.85
