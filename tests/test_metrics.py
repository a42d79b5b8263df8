"""Metric and agreement functions against hand-computed small cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aspects_research import agreement as ag
from aspects_research import metrics as m


def cube(shape, lo, hi):
    a = np.zeros(shape, dtype=np.uint8)
    a[tuple(slice(a0, b0) for a0, b0 in zip(lo, hi))] = 1
    return a


def ball(shape, centre, radius):
    z, y, x = np.indices(shape)
    return ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2).astype(np.uint8)


def test_two_cubes_half_overlap():
    truth = cube((8, 8, 10), (2, 2, 2), (6, 6, 6))
    pred = cube((8, 8, 10), (2, 2, 4), (6, 6, 8))  # shifted 2 voxels in x: 32 of 64 voxels shared
    r = m.segmentation_metrics(pred, truth, spacing=(2.0, 1.0, 1.0))
    assert r.dice == pytest.approx(0.5)
    assert r.iou == pytest.approx(32 / 96)
    assert r.precision == pytest.approx(0.5)
    assert r.sensitivity == pytest.approx(0.5)
    assert r.volumetric_similarity == pytest.approx(1.0)
    assert r.avd_ml == pytest.approx(0.0)
    assert r.truth_ml == pytest.approx(64 * 2.0 / 1000)
    # every pred surface voxel is a truth surface voxel shifted by 2 mm in x, so no distance exceeds 2
    assert 0 < r.hd95_mm <= 2.0
    assert r.surface_dice_5mm == pytest.approx(1.0)


def test_single_voxels_distance_uses_spacing():
    truth = cube((3, 3, 8), (1, 1, 1), (2, 2, 2))
    pred = cube((3, 3, 8), (1, 1, 4), (2, 2, 5))  # 3 voxels apart along x, x spacing 2 mm
    d = m.surface_distances(pred, truth, spacing=(1.0, 1.0, 2.0))
    assert d[0].tolist() == [6.0] and d[1].tolist() == [6.0]
    assert m.hd95_mm(d) == 6.0 and m.assd_mm(d) == 6.0
    assert m.surface_dice(d, 5.0) == 0.0 and m.surface_dice(d, 6.0) == 1.0


def test_shifted_sphere_hausdorff_is_the_shift():
    truth = ball((24, 24, 24), (12, 12, 10), 6)
    pred = ball((24, 24, 24), (12, 12, 13), 6)  # shifted 3 voxels of 0.5 mm = 1.5 mm
    d = m.surface_distances(pred, truth, spacing=(0.5, 0.5, 0.5))
    assert max(d[0].max(), d[1].max()) == pytest.approx(1.5)
    assert 0 < m.hd95_mm(d) <= 1.5
    assert 0 < m.assd_mm(d) < 1.5
    same = m.segmentation_metrics(truth, truth, (0.5, 0.5, 0.5))
    assert (same.dice, same.hd95_mm, same.assd_mm, same.surface_dice_5mm) == (1.0, 0.0, 0.0, 1.0)


def test_surface_distances_on_a_crop_equal_brute_force():
    rng = np.random.default_rng(3)
    shape, spacing = (6, 7, 8), (2.5, 0.7, 0.9)
    truth = (rng.random(shape) > 0.8).astype(np.uint8)
    pred = cube(shape, (0, 0, 5), (3, 4, 8))  # touches the array border
    d = m.surface_distances(pred, truth, spacing)
    sp, st = np.argwhere(m.surface(pred)) * spacing, np.argwhere(m.surface(truth)) * spacing
    pair = np.linalg.norm(sp[:, None, :] - st[None, :, :], axis=2)
    np.testing.assert_allclose(np.sort(d[0]), np.sort(pair.min(axis=1)))
    np.testing.assert_allclose(np.sort(d[1]), np.sort(pair.min(axis=0)))


def test_surface_is_boundary_of_a_cube():
    s = m.surface(cube((5, 5, 5), (0, 0, 0), (5, 5, 5)))
    assert s.sum() == 125 - 27  # the array edge is treated as background


def test_empty_masks_follow_seed_004():
    z = np.zeros((4, 4, 4), np.uint8)
    t = cube((4, 4, 4), (1, 1, 1), (3, 3, 3))
    both = m.segmentation_metrics(z, z, (1, 1, 1))
    assert both.dice is None and both.iou is None and both.volumetric_similarity is None
    assert both.precision is None and both.sensitivity is None and both.hd95_mm is None
    assert both.avd_ml == 0.0
    missed = m.segmentation_metrics(z, t, (1, 1, 1))
    assert missed.dice == 0.0 and missed.sensitivity == 0.0 and missed.precision is None
    assert missed.volumetric_similarity == 0.0 and missed.hd95_mm is None and missed.assd_mm is None
    assert missed.avd_ml == pytest.approx(0.008)
    false_alarm = m.segmentation_metrics(t, z, (1, 1, 1))
    assert false_alarm.dice == 0.0 and false_alarm.precision == 0.0 and false_alarm.sensitivity is None
    assert [m.detection_outcome(a, b) for a, b in [(0, 0), (1, 0), (0, 1), (1, 1)]] == ["tn", "fn", "fp", "tp"]


def test_masks_at_or_below_empty_ml_count_as_empty():
    t = cube((10, 10, 10), (0, 0, 0), (10, 10, 10))  # 1 ml at 1 mm
    speck = cube((10, 10, 10), (0, 0, 0), (1, 1, 1))
    r = m.segmentation_metrics(speck, t, (1, 1, 1), empty_ml=0.5)
    assert r.dice == 0.0 and r.precision is None and r.pred_ml == pytest.approx(0.001)
    assert m.detection_outcome(r.truth_ml, r.pred_ml, empty_ml=0.5) == "fn"


def test_label_dice_per_label():
    truth = np.array([[1, 1, 2, 2, 0, 0]])
    pred = np.array([[1, 2, 2, 2, 0, 3]])
    d = m.label_dice(pred, truth, [1, 2, 3, 4])
    assert d[1] == pytest.approx(2 / 3) and d[2] == pytest.approx(4 / 5)
    assert d[3] == 0.0 and d[4] is None


def test_bootstrap_median_is_reproducible_and_skips_undefined():
    vals = [0.1, 0.5, None, 0.9, float("nan"), 0.3, 0.7]
    a, b = m.bootstrap_median(vals, seed=1), m.bootstrap_median(vals, seed=1)
    assert a == b and a.n == 5 and a.median == pytest.approx(0.5) and a.mean == pytest.approx(0.5)
    assert a.ci_low <= a.median <= a.ci_high and a.ci_low >= 0.1 and a.ci_high <= 0.9
    const = m.bootstrap_median([2.0] * 4)
    assert (const.ci_low, const.ci_high) == (2.0, 2.0)
    assert m.bootstrap_median([None]).n == 0 and m.bootstrap_median([]).median is None


def test_paired_bootstrap_difference_keeps_pairs_and_skips_undefined():
    a = [0.1, 0.2, None, 0.4, 0.5]
    b = [0.3, 0.2, 0.9, float("nan"), 0.6]
    d = m.paired_bootstrap_difference(a, b, seed=1)
    assert d == m.paired_bootstrap_difference(a, b, seed=1)
    assert d.n == 3 and d.mean_a == pytest.approx(0.8 / 3) and d.mean_b == pytest.approx(1.1 / 3)
    assert d.difference == pytest.approx(0.1) and d.b_better == 2
    assert 0.0 <= d.ci_low <= d.difference <= d.ci_high <= 0.2  # resampled means of {0.2, 0, 0.1}
    shift = m.paired_bootstrap_difference([0.1, 0.5, 0.9], [0.2, 0.6, 1.0])  # constant paired shift
    assert (shift.ci_low, shift.ci_high) == (pytest.approx(0.1), pytest.approx(0.1))
    assert m.paired_bootstrap_difference([None], [0.5]).n == 0
    with pytest.raises(ValueError):
        m.paired_bootstrap_difference([0.1], [0.1, 0.2])


def test_score_agreement_hand_computed():
    r = ag.score_agreement([10, 8, 5, 3], [10, 7, 7, 3])
    assert (r.n, r.exact, r.within_1, r.within_2) == (4, 0.5, 0.75, 1.0)
    assert r.mae == pytest.approx(0.75) and r.mean_difference == pytest.approx(0.25)
    d = r.dichotomised  # positive = ASPECTS < 6
    assert (d.tp, d.fn, d.tn, d.fp) == (1, 1, 2, 0) and d.sensitivity == 0.5 and d.specificity == 1.0
    empty = ag.score_agreement([], [])
    assert empty.n == 0 and empty.exact is None and empty.kappa_quadratic is None


def test_kappa_hand_computed_and_undefined():
    assert ag.quadratic_weighted_kappa([0, 1], [1, 0], values=(0, 1)) == pytest.approx(-1.0)
    assert ag.quadratic_weighted_kappa([3, 7, 10], [3, 7, 10]) == pytest.approx(1.0)
    assert ag.quadratic_weighted_kappa([10, 10], [10, 10]) is None


def test_kappa_equals_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.integers(0, 11, 30)
        p = np.clip(t + rng.integers(-2, 3, 30), 0, 10)
        want = sk.cohen_kappa_score(t, p, labels=list(range(11)), weights="quadratic")
        assert ag.quadratic_weighted_kappa(t.tolist(), p.tolist()) == pytest.approx(want)


def test_confusion_matrix_rejects_out_of_range_scores():
    assert ag.confusion_matrix([10, 9], [10, 10])[10, 10] == 1
    with pytest.raises(ValueError):
        ag.confusion_matrix([11], [10])


def test_region_involvement_and_side():
    truths = [{"left": ["M1", "M2"], "right": []}, {"left": [], "right": []}]
    preds = [{"left": ["M1"], "right": ["C"]}, {"left": [], "right": []}]
    r = ag.region_involvement(truths, preds)
    assert (r["M1"].tp, r["M1"].tn) == (1, 3)
    assert (r["M2"].fn, r["M2"].sensitivity) == (1, 0.0)
    assert (r["C"].fp, r["C"].specificity) == (1, 0.75)
    assert r["all"].tp + r["all"].fp + r["all"].tn + r["all"].fn == 40
    assert (r["all"].tp, r["all"].fn, r["all"].fp) == (1, 1, 1)
    assert ag.side_accuracy(["left", "right", None], ["left", "left", None]) == (2, 0.5)
    assert ag.side_accuracy([None], ["left"]) == (0, None)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 0.45, 0.45)])
def test_dice_iou_relation(spacing):
    rng = np.random.default_rng(7)
    for a, b in itertools.islice(zip(rng.random((4, 5, 6, 7)) > 0.5, rng.random((4, 5, 6, 7)) > 0.6), 4):
        r = m.segmentation_metrics(a, b, spacing)
        assert r.iou == pytest.approx(r.dice / (2 - r.dice))
