"""ASPECTS scoring maths on hand-made region maps (no pipeline)."""

import numpy as np
import pytest

from aspects.labels import REGION_CODES, label_value, region_of
from aspects.scoring import (affected_side, aspects_per_side, assessable_regions, region_findings, score,
                             voxel_volume_ml)


def _regions(shape=(22, 20, 40)):
    """Right regions on x < 20, left on x >= 20: each code a 2-slice slab, 800 voxels per region;
    the last two slices are outside every region."""
    lab = np.zeros(shape, np.uint8)
    for i, code in enumerate(REGION_CODES):
        lab[2 * i: 2 * i + 2, :, :20] = label_value("right", code)
        lab[2 * i: 2 * i + 2, :, 20:] = label_value("left", code)
    return lab


def test_label_table_round_trip():
    assert label_value("right", "C") == 1 and label_value("left", "M6") == 20
    assert all(label_value(region_of(v).side, region_of(v).code) == v for v in range(1, 21))
    with pytest.raises(ValueError):
        label_value("middle", "C")


def test_normal_brain_scores_ten_and_no_side():
    lab = _regions()
    r = score(lab, np.zeros_like(lab, bool), (1.0, 1.0, 1.0))
    assert r.aspects == {"left": 10, "right": 10}
    assert r.affected_side is None and r.score == 10 and r.infarct_volume_ml == 0


def test_involvement_threshold_and_volume():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    inf[lab == label_value("left", "M1")] = True  # whole left M1: 800 voxels
    l_voxels = np.argwhere(lab == label_value("left", "L"))
    inf[tuple(l_voxels[:79].T)] = True  # 79/800 = 9.875 % of left L: below 10 %
    ic = np.argwhere(lab == label_value("left", "IC"))
    inf[tuple(ic[:80].T)] = True  # exactly 10 %: counts
    r = score(lab, inf, (0.5, 0.5, 2.0))  # 0.5 mm^3 per voxel
    left = r.regions["left"]
    assert left["M1"].involved and left["M1"].infarct_fraction == 1.0
    assert not left["L"].involved and left["L"].infarct_fraction == pytest.approx(0.09875)
    assert left["IC"].involved
    assert r.aspects == {"left": 8, "right": 10}
    assert r.affected_side == "left" and r.score == 8
    assert r.infarct_volume_ml == pytest.approx((800 + 79 + 80) * 0.5 / 1000)
    assert left["M1"].infarct_ml == pytest.approx(0.4)


def test_ml_rule_counts_small_lesion_in_large_region_when_enabled():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    vox = np.argwhere(lab == label_value("right", "M5"))
    inf[tuple(vox[:40].T)] = True  # 5 % of the region, 40 ml at 1 ml/voxel
    assert score(lab, inf, (10.0, 10.0, 10.0)).aspects["right"] == 10
    assert score(lab, inf, (10.0, 10.0, 10.0), ml_threshold=1.0).aspects["right"] == 9


def test_infarct_outside_regions_adds_volume_not_points():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    inf[lab == 0] = True
    r = score(lab, inf, (1, 1, 1))
    assert r.aspects == {"left": 10, "right": 10} and r.infarct_volume_ml > 0 and r.affected_side is None


def test_tie_goes_to_side_with_more_infarct():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    inf[lab == label_value("right", "M2")] = True
    inf[lab == label_value("left", "C")] = True
    inf[lab == label_value("right", "I")] = True
    inf[lab == label_value("left", "L")] = True
    f = region_findings(lab, inf, 1e-3)
    s = aspects_per_side(f)
    assert s == {"left": 8, "right": 8}
    assert affected_side(f, s) in ("left", "right")  # equal region ml -> deterministic choice
    inf2 = inf.copy()
    inf2[tuple(np.argwhere(lab == label_value("right", "M3"))[:5].T)] = True  # 5 voxels: more right ml
    f2 = region_findings(lab, inf2, 1e-3)
    assert affected_side(f2, aspects_per_side(f2)) == "right"


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        score(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3), bool), (1, 1, 1))


def test_voxel_volume():
    assert voxel_volume_ml((0.5, 0.5, 5.0)) == pytest.approx(0.00125)


def test_region_not_covered_makes_its_side_not_assessable():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    inf[lab == label_value("right", "M1")] = True
    coverage = {v: 1.0 for v in range(1, 21)}
    coverage[label_value("left", "M6")] = 0.4  # the scan stops inside left M6
    r = score(lab, inf, (1, 1, 1), assessable=assessable_regions(coverage))
    assert r.regions["left"]["M6"].assessable is False and r.regions["left"]["M6"].involved is None
    assert r.aspects == {"right": 9, "left": None}
    assert r.affected_side == "right" and r.score == 9  # the affected side is fully covered
    assert r.not_assessable == ["left M6"]
    inf2 = np.zeros_like(lab, bool)  # nothing involved anywhere, one side incomplete: no total score
    r2 = score(lab, inf2, (1, 1, 1), assessable=assessable_regions(coverage))
    assert r2.affected_side is None and r2.score is None
    inf3 = np.zeros_like(lab, bool)  # the infarcted side is the incomplete one: no score
    inf3[lab == label_value("left", "M1")] = True
    r3 = score(lab, inf3, (1, 1, 1), assessable=assessable_regions(coverage))
    assert r3.affected_side == "left" and r3.score is None


def test_coverage_threshold():
    cov = {v: 1.0 for v in range(1, 21)}
    cov[label_value("right", "C")] = 0.95
    cov[label_value("right", "L")] = 0.9499
    a = assessable_regions(cov)
    assert a["right"]["C"] and not a["right"]["L"]


def test_per_slice_volumes_for_unequal_slice_steps():
    lab = _regions()
    inf = np.zeros_like(lab, bool)
    inf[0:2][lab[0:2] == label_value("left", "C")] = True  # left C fills slices 0-1
    slice_ml = np.full(lab.shape[0], 0.001)
    slice_ml[1] = 0.003  # slice 1 stands for a slab three times as thick
    r = score(lab, inf, (), slice_ml=slice_ml)
    per_slice = (lab[0] == label_value("left", "C")).sum()
    assert r.regions["left"]["C"].infarct_ml == pytest.approx(per_slice * (0.001 + 0.003))
    assert r.infarct_volume_ml == pytest.approx(per_slice * 0.004)
    assert r.regions["left"]["C"].infarct_fraction == 1.0


def _evidence(called: dict):
    from aspects.region_evidence import RegionEvidence
    ev = {s: {c: RegionEvidence(3.0 if called.get((s, c)) else 0.1, 4.0 if called.get((s, c)) else 0.1, 500)
              for c in REGION_CODES} for s in ("right", "left")}
    calls = {s: {c: bool(called.get((s, c))) for c in REGION_CODES} for s in ("right", "left")}
    return ev, calls


def test_region_evidence_counts_where_the_acute_mask_reaches_the_region():
    """The evidence lifts a near-threshold mask call (a few HU over a region that voxel noise hides
    in part); alone, with no mask in the region (natural asymmetry, an old infarct's surroundings),
    it is reported and not counted."""
    from aspects.result_json import problems
    from tests.support.ct_series import make_ct_series, make_masks, make_result

    lab = _regions()
    ev, calls = _evidence({("left", "M5"): True})
    r = score(lab, np.zeros_like(lab, bool), (1.0, 1.0, 1.0), evidence=ev, evidence_calls=calls)
    assert r.aspects == {"left": 10, "right": 10} and r.affected_side is None and r.infarct_volume_ml == 0
    m5 = r.regions_json()["left"]["M5"]
    assert m5["involved"] is False and m5["involved_by"] == [] and m5["evidence_without_mask"] is True
    assert m5["evidence"] == {"delta_hu": 3.0, "z": 4.0, "partial_hu": None, "partial_z": None, "n_voxels": 500,
                              "called": False, "volume_loss": None, "volume_loss_veto": False}
    assert "evidence_without_mask" not in r.regions_json()["left"]["M4"]
    # 8 % of M5 under the mask: not a mask call (10 %), but within the marginal band's floor (7 %)
    # the evidence calls it; 6 % is below the floor.
    m5_voxels = np.argwhere(lab == label_value("left", "M5"))
    for n, involved in ((64, True), (48, False)):  # of 800 voxels
        inf = np.zeros_like(lab, bool)
        inf[tuple(m5_voxels[:n].T)] = True
        got = score(lab, inf, (1.0, 1.0, 1.0), evidence=ev, evidence_calls=calls).regions_json()["left"]["M5"]
        assert got["involved"] is involved and got["involved_by"] == (["evidence"] if involved else [])
        assert got["evidence"]["called"] is involved and got.get("evidence_without_mask", False) is not involved
        assert "marginal" not in got  # evidence-decided, or below the band
    # A site that wants the evidence to call alone sets no floor.
    alone = score(lab, np.zeros_like(lab, bool), (1.0, 1.0, 1.0), evidence=ev, evidence_calls=calls,
                  evidence_mask_floor=None)
    assert alone.aspects == {"left": 9, "right": 10} and alone.regions_json()["left"]["M5"]["involved_by"] == ["evidence"]
    # The JSON validator holds the rules together.
    d = make_result(make_ct_series(), *make_masks())
    side, code = next((s, c) for s in ("right", "left") for c in REGION_CODES if not d["regions"][s][c]["involved"])
    d["regions"][side][code].update(involved_by=["evidence"], evidence=dict(m5["evidence"], called=True))
    assert any(f"regions.{side}.{code}.involved is False but involved_by is ['evidence']" in p for p in problems(d)), problems(d)
    d["regions"][side][code].update(involved=True, evidence_without_mask=True)
    assert any(f"regions.{side}.{code}.evidence_without_mask: expected true on a region the evidence did not call" in p
               for p in problems(d)), problems(d)


def test_evidence_and_mask_both_recorded_and_not_assessable_wins():
    lab = _regions()
    inf = lab == label_value("right", "C")
    ev, calls = _evidence({("right", "C"): True, ("left", "M6"): True})
    cover = assessable_regions({label_value("left", "M6"): 0.5})
    r = score(lab, inf, (1.0, 1.0, 1.0), assessable=cover, evidence=ev, evidence_calls=calls)
    regions = r.regions_json()
    assert regions["right"]["C"]["involved_by"] == ["mask", "evidence"]
    assert regions["left"]["M6"]["involved"] is None and regions["left"]["M6"]["involved_by"] == []
    assert r.aspects == {"right": 9, "left": None}


def test_a_mask_sliver_over_tissue_no_darker_than_its_mirror_is_not_called():
    """Mask support (session 16): a mask call on under 15 % of a region stands only where the
    region's mean difference to its mirror reaches 0.3 HU; a larger share, a darker region, or a
    region whose difference could not be measured keeps the call; aspects.json says why."""
    from aspects.region_evidence import MaskSupportCalibration, RegionEvidence, load_calibration
    from aspects.result_json import problems
    from tests.support.ct_series import make_ct_series, make_masks, make_result

    lab = _regions()
    inf = np.zeros_like(lab, bool)
    for code, n in (("L", 96), ("IC", 96), ("M2", 96), ("M4", 160)):  # 12 % of three regions, 20 % of M4
        vox = np.argwhere(lab == label_value("left", code))
        inf[tuple(vox[:n].T)] = True
    delta = {"L": 0.1, "IC": 0.8, "M2": None, "M4": 0.1}  # L: no darker than the mirror on average
    ev = {s: {c: RegionEvidence(delta.get(c) if s == "left" else 0.0, None, 500 if delta.get(c, 0) is not None else 0)
              for c in REGION_CODES} for s in ("right", "left")}
    support = MaskSupportCalibration(below_fraction=0.15, min_delta_hu=0.3)
    r = score(lab, inf, (1.0, 1.0, 1.0), evidence=ev, mask_support=support)
    left = r.regions_json()["left"]
    assert left["L"]["involved"] is False and left["L"]["unsupported_mask_call"] is True
    assert left["L"]["infarct_fraction"] == pytest.approx(0.12)
    assert left["IC"]["involved_by"] == ["mask"] and "unsupported_mask_call" not in left["IC"]  # darker: stands
    assert left["M2"]["involved"] is True  # not measurable: the call stands
    assert left["M4"]["involved"] is True  # 20 % of the region: above the sliver size
    assert r.aspects == {"left": 7, "right": 10}
    off = score(lab, inf, (1.0, 1.0, 1.0), evidence=ev, mask_support=MaskSupportCalibration(0.15, 0.3, applies=False))
    assert off.aspects == {"left": 6, "right": 10}  # reported calibration only: the mask decides
    # the shipped calibration applies it, and the validator accepts the record only where the mask did not call
    shipped = load_calibration()
    assert shipped is not None and shipped.mask_support is not None and shipped.mask_support.applies
    d = make_result(make_ct_series(), *make_masks())
    side, code = next((s, c) for s in ("right", "left") for c in REGION_CODES if d["regions"][s][c]["involved"])
    d["regions"][side][code].update(involved_by=["mask"], unsupported_mask_call=True)
    assert any(f"regions.{side}.{code}.unsupported_mask_call" in p for p in problems(d)), problems(d)


def test_calls_the_mask_makes_near_its_threshold_are_marginal_and_give_the_aspects_range():
    """Session 17: a call the voxel mask alone decides with a fraction from 0.7 to 2.5 times the
    threshold (0.07-0.25 at 10 %) is marginal; the hemisphere's ASPECTS range flips each marginal
    call. An evidence call, a clear mask call and a faint sliver are firm; the band follows a
    site's threshold; aspects.json's validator holds the range to the marginal calls."""
    from aspects.result_json import problems
    from tests.support.ct_series import make_ct_series, make_masks, make_result

    lab = _regions()
    inf = np.zeros_like(lab, bool)
    for code, n in (("C", 160), ("L", 64), ("IC", 40), ("I", 320), ("M1", 160)):  # 20, 8, 5, 40, 20 %
        vox = np.argwhere(lab == label_value("left", code))
        inf[tuple(vox[:n].T)] = True
    calls = {s: {c: s == "left" and c == "M1" for c in REGION_CODES} for s in ("right", "left")}
    r = score(lab, inf, (1.0, 1.0, 1.0), evidence_calls=calls)
    left = r.regions_json()["left"]
    assert [c for c in REGION_CODES if left[c].get("marginal")] == ["C", "L"]
    assert left["C"]["involved"] is True and left["L"]["involved"] is False
    assert left["M1"]["involved_by"] == ["mask", "evidence"] and "marginal" not in left["M1"]  # the evidence agrees
    assert r.aspects == {"right": 10, "left": 7}
    assert r.aspects_range() == {"right": [10, 10], "left": [6, 8]}
    assert r.marginal_regions == ["left C", "left L"]
    # a site's 20 % threshold: the band is 14-50 %, so C (20 %) and I (40 %) are marginal, L (8 %) not
    site = score(lab, inf, (1.0, 1.0, 1.0), fraction_threshold=0.2, evidence_calls=calls)
    assert site.marginal_regions == ["left C", "left I"] and site.aspects_range()["left"] == [7, 9]
    assert score(lab, inf, (1.0, 1.0, 1.0), evidence_calls=calls, marginal_band=None).aspects_range()["left"] == [7, 7]
    # a side with no ASPECTS has no range
    missing = assessable_regions({label_value("left", "M6"): 0.5})
    assert score(lab, inf, (1.0, 1.0, 1.0), assessable=missing).aspects_range()["left"] is None
    # the validator: a range that does not follow from the marginal calls, a marginal evidence call
    d = make_result(make_ct_series(), *make_masks())
    side = next(s for s in ("right", "left") if d["aspects"][s] < 10)
    code = next(c for c in REGION_CODES if d["regions"][side][c]["involved"])
    d["regions"][side][code]["marginal"] = True
    d["aspects_range"] = {s: [d["aspects"][s], d["aspects"][s]] for s in ("right", "left")}
    assert any(p.startswith(f"aspects_range.{side}") for p in problems(d)), problems(d)
    d["aspects_range"][side] = [d["aspects"][side], d["aspects"][side] + 1]
    assert problems(d) == []
    d["regions"][side][code]["involved_by"] = ["evidence"]
    assert any(f"regions.{side}.{code}.marginal" in p for p in problems(d)), problems(d)
