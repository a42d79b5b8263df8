"""Lesion synthesis for training the infarct model (aspects_research.synthetic_infarct and the
bundle's SyntheticInfarctd): the painted change is what the v2 generator paints, where it must be."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aspects_research import synthetic_infarct as S

SHAPE = (96, 112, 96)  # the aligned grid, model layout (x, y, z)


def _head(rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Parenchyma ~32 HU in an ellipsoid, a CSF column in the middle, 0 outside (skull stripped)."""
    g = np.indices(SHAPE, dtype=np.float32)
    c = (np.array(SHAPE) - 1) / 2.0
    r = sum(((g[i] - c[i]) / (0.42 * SHAPE[i])) ** 2 for i in range(3))
    hu = np.where(r <= 1.0, 32.0, 0.0).astype(np.float32)
    hu[44:52, 50:60, 40:60] = np.where(r[44:52, 50:60, 40:60] <= 1.0, 5.0, 0.0)  # ventricle-like CSF
    if noise:
        hu += (r <= 1.0) * rng.normal(0.0, noise, SHAPE).astype(np.float32)
    return hu


def _ball(centre, radius) -> np.ndarray:
    g = np.indices(SHAPE, dtype=np.float32)
    return sum((g[i] - centre[i]) ** 2 for i in range(3)) <= radius ** 2


def test_paint_gives_the_drawn_mean_drop_on_parenchyma_only():
    rng = np.random.default_rng(0)
    hu = _head(rng)
    before = hu.copy()
    lesion = _ball((30, 56, 48), 8) | _ball((48, 55, 50), 3)  # the second ball sits on the CSF column
    painted, truth = S.paint(hu, lesion, 3.0, rng, margin_vox=0.5)
    np.testing.assert_array_equal(hu, before)  # input unchanged
    assert truth.any() and not truth[44:52, 50:60, 40:60].any()  # never CSF
    assert np.isclose(float((hu - painted)[truth].mean()), 3.0, atol=1e-3)  # mean drop over the truth
    far = ~_ball((30, 56, 48), 14) & ~_ball((48, 55, 50), 9)
    np.testing.assert_array_equal(painted[far], hu[far])  # nothing away from the lesion
    np.testing.assert_array_equal(painted[hu == 0], 0)  # nothing on the skull-stripped background


def test_paint_keeps_the_drop_of_tissue_darker_than_the_lesion_mean():
    # A dim nucleus (22 HU) inside a 32 HU lesion: "darken" (the default) lowers it by the drawn
    # 8 HU like the rest; the generator's old "compress" pulled it towards the lesion's mean and
    # left it 3.9 HU. Both keep the drawn mean drop over the truth (within 0.03 HU).
    rng = np.random.default_rng(3)
    hu = _head(rng)
    box = (slice(28, 31), slice(52, 60), slice(44, 52))
    hu[box] = 22.0
    lesion = _ball((30, 56, 48), 8)
    drops = {}
    for mode in ("darken", "compress"):
        painted, truth = S.paint(hu, lesion, 8.0, np.random.default_rng(4), contrast_loss=mode)
        d = hu - painted
        assert np.isclose(float(d[truth].mean()), 8.0, atol=0.05) and float(d.min()) >= -1e-4
        dim = truth & (hu == 22.0)
        drops[mode] = float(d[dim].mean())
    assert drops["darken"] > 7.5 and drops["compress"] < 5.0


def test_thick_slices_blur_the_change_along_z_only():
    assert S.z_blur_sigma_vox(2.0) == 0.0 and S.z_blur_sigma_vox(0.625) == 0.0
    assert math.isclose(S.z_blur_sigma_vox(5.0), math.sqrt(21.0) / (2 * math.sqrt(2 * math.log(2))) / 2.0)
    rng = np.random.default_rng(1)
    hu = _head(rng)
    lesion = _ball((30, 56, 48), 6)
    sharp, _ = S.paint(hu, lesion, 6.0, np.random.default_rng(2), z_sigma_vox=0.0)
    thick, _ = S.paint(hu, lesion, 6.0, np.random.default_rng(2), z_sigma_vox=S.z_blur_sigma_vox(5.0))
    # the 5 mm change reaches further along z than in x
    assert (hu - thick)[30, 56, 48 + 8] > 0.05 and (hu - thick)[30 + 8, 56, 48] < 0.01
    assert (hu - thick)[30, 56, 48 + 8] > 20 * (hu - sharp)[30, 56, 48 + 8]


def test_a_synthetic_lesion_joins_the_hemisphere_of_the_study_infarct():
    rng = np.random.default_rng(3)
    hu = _head(rng, noise=3.0)
    bank = [S.Lesion("a", _ball((20, 20, 20), 5)[:30, :30, :30], (10, 40, 30))]  # low-x half
    label = _ball((70, 56, 48), 4)  # the study's own infarct in the high-x half
    painted, truth, info = S.synthesise(hu, label, bank, rng, slice_mm=5.0)
    assert S.side_of(truth & ~label) == 1 and (truth >= label).all()
    assert info["slice_mm"] == 5.0 and info["ml"] > 0 and 1.0 <= info["drop_hu"] <= 12.0
    _, truth2, _ = S.synthesise(hu, np.zeros(SHAPE, bool), bank, np.random.default_rng(4))
    assert truth2.any()


def test_bundle_transform_paints_image_and_label_with_probability(tmp_path):
    pytest.importorskip("monai")
    from train.infarct_seg.scripts.transforms import SyntheticInfarctd

    rng = np.random.default_rng(5)
    hu = _head(rng, noise=3.0)
    bank = [S.Lesion("a", _ball((10, 10, 10), 6)[:21, :21, :21], (15, 45, 40))]
    img = torch.as_tensor((np.clip(hu, 0, 80) / 80.0)[None])
    lab = torch.zeros((1,) + SHAPE)
    on = SyntheticInfarctd(prob=1.0)
    on._bank = bank
    on.set_random_state(0)
    out = on({"image": img, "label": lab, "slice_mm": 2.5})
    assert out["label"].sum() > 0 and out["image"].shape == img.shape
    assert float((img - out["image"])[out["label"] > 0].mean()) * 80.0 > 0.9  # drops of >= 1 HU
    off = SyntheticInfarctd(prob=0.0)
    off._bank = bank
    same = off({"image": img, "label": lab})
    assert same["image"] is img and same["label"] is lab


def test_asymmetry_augmentation_is_a_faint_broad_mirrored_change_of_tissue_only():
    """RandHemisphericAsymmetryd: a normal head made faintly asymmetric (<= the peak, broad), the
    counterpart given the mirrored field, CSF / bone / background untouched, the label unchanged."""
    pytest.importorskip("monai")
    from train.infarct_seg.scripts.transforms import RandHemisphericAsymmetryd

    rng = np.random.default_rng(3)
    hu = _head(rng, noise=3.0)
    hu[:2] = 1000.0  # "bone" at one edge
    img = torch.as_tensor((np.clip(hu, 0, 80) / 80.0)[None])
    contra = torch.as_tensor(np.ascontiguousarray(img.numpy()[:, ::-1]))  # a symmetric head's counterpart
    lab = torch.zeros((1,) + SHAPE)
    t = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=1.0, peak_hu=(2.0, 2.0), sigma_mm=(20.0, 20.0))
    t.set_random_state(0)
    out = t({"image": img, "contra": contra, "label": lab})
    add = (out["image"].numpy() - img.numpy())[0] * 80.0
    add_c = (out["contra"].numpy() - contra.numpy())[0] * 80.0
    tissue = (hu > 25) & (hu < 40)
    assert 0.5 < np.abs(add[tissue]).max() <= 2.0 + 1e-3  # faint: at most the peak
    assert np.abs(add[hu <= 5]).max() < 1e-5 and np.abs(add[:2]).max() == 0  # CSF, background, bone kept
    np.testing.assert_allclose(add_c, add[::-1] * (contra.numpy()[0] > 0), atol=1e-3)  # mirrored
    # broad: neighbouring tissue voxels differ by far less than the field's range
    both = tissue[1:] & tissue[:-1]
    assert np.abs(np.diff(add, axis=0)[both]).max() < 0.25 * np.ptp(add[tissue])
    assert out["label"] is lab
    off = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=0.0)
    assert off({"image": img, "contra": contra})["image"] is img


def test_lateral_asymmetry_is_one_signed_over_one_side_and_mirrored_onto_the_counterpart():
    """lateral_share 1: the field is a one-signed bump of 1-3 HU centred off the midline (a real
    head's natural asymmetry darkens a territory's regions together), tissue only, its mirror on
    the counterpart; the label unchanged. lateral_share 0 draws the zero-mean field as before."""
    pytest.importorskip("monai")
    from train.infarct_seg.scripts.transforms import RandHemisphericAsymmetryd

    hu = _head(np.random.default_rng(4))
    img = torch.as_tensor((np.clip(hu, 0, 80) / 80.0)[None])
    contra = torch.as_tensor(np.ascontiguousarray(img.numpy()[:, ::-1]))
    tissue = (hu > 25) & (hu < 40)
    half = SHAPE[0] // 2
    signs = set()
    for seed in range(6):
        t = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=1.0, lateral_share=1.0)
        t.set_random_state(seed)
        out = t({"image": img, "contra": contra})
        add = (out["image"].numpy() - img.numpy())[0] * 80.0
        add_c = (out["contra"].numpy() - contra.numpy())[0] * 80.0
        a = add[tissue]
        sign = np.sign(a[np.abs(a).argmax()])
        signs.add(sign)
        assert np.all(a * sign >= -1e-4)  # one sign over the whole head
        assert 1.0 - 1e-3 <= np.abs(a).max() <= 3.0 + 1e-3
        assert np.abs(add[hu <= 5]).max() < 1e-5  # CSF and background kept
        np.testing.assert_allclose(add_c, add[::-1] * (contra.numpy()[0] > 0), atol=1e-3)
        sides = [np.abs(add[:half][tissue[:half]]).sum(), np.abs(add[half:][tissue[half:]]).sum()]
        assert max(sides) > 1.5 * min(sides)  # more on one side: an asymmetry, not a global shift
    assert signs == {-1.0, 1.0}  # darker and brighter both drawn
    # label_key: a labelled lesion and its mirror keep their contrast (the field is 0 there)
    lab = np.zeros((1,) + SHAPE, np.float32)
    lab[0, 25:33, 50:60, 40:50] = 1.0
    keep = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=1.0, lateral_share=1.0, label_key="label")
    for seed in range(3):
        keep.set_random_state(seed)
        out = keep({"image": img, "contra": contra, "label": torch.as_tensor(lab)})
        add = (out["image"].numpy() - img.numpy())[0] * 80.0
        add_c = (out["contra"].numpy() - contra.numpy())[0] * 80.0
        both = (lab[0] > 0) | (lab[0, ::-1] > 0)
        assert np.abs(add[both]).max() == 0 and np.abs(add_c[both]).max() == 0
        assert np.abs(add[tissue]).max() > 0.5  # and the head elsewhere still gets it
    old = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=1.0)
    zero = RandHemisphericAsymmetryd(keys="image", contra_key="contra", prob=1.0, lateral_share=0.0)
    old.set_random_state(7)
    zero.set_random_state(7)
    a, b = old({"image": img, "contra": contra}), zero({"image": img, "contra": contra})
    assert torch.equal(a["image"], b["image"])
    field = (a["image"].numpy() - img.numpy())[0][tissue]
    assert field.min() < 0 < field.max()  # the random field has both signs


def test_checkpoint_selection_weighs_each_hu_stratum_equally():
    from train.infarct_seg.scripts.choose_checkpoint import balanced, dice

    assert dice(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == 0.5
    hu = {"a": 2.5, "b": 3.0, "c": 3.5, "d": 8.0}
    # three subtle studies at 0.6 and one clear one at 0.2: the plain mean says 0.5, balanced 0.4
    figs = balanced({"a": 0.6, "b": 0.6, "c": 0.6, "d": 0.2}, hu)
    assert figs["all"] == pytest.approx(0.5) and figs["balanced"] == pytest.approx(0.4)
    assert figs["< 4 HU"] == pytest.approx(0.6) and figs[">= 4 HU"] == pytest.approx(0.2)
    assert balanced({"d": 0.3}, hu)["balanced"] == pytest.approx(0.3)  # an empty stratum is left out
