"""aspects_research.tools.region_rule_sweep: candidate region rules scored from aspects.json."""

import json

from aspects.labels import REGION_CODES
from aspects_research.tools.region_rule_sweep import (error_bands, figures, joint, mask_support, range_figures, regions_of,
                                                      shipped)


def _region(involved=False, fraction=0.0, by=(), delta=0.0, z=0.0, pz=0.0):
    return {"involved": involved, "assessable": True, "infarct_fraction": fraction, "infarct_ml": 0.0,
            "involved_by": list(by), "evidence": {"delta_hu": delta, "z": z, "partial_hu": None, "partial_z": pz,
                                                  "n_voxels": 500, "called": "evidence" in by}}


def _study(root, runs, case, kind, truth_left, regions_left):
    (root / case).mkdir(parents=True)
    truth = {"kind": kind, "involved": {"left": truth_left, "right": []}, "hu_drop": 3.5 if kind == "acute" else 0.0,
             "infarct_volume_ml": 10.0 if kind == "acute" else 0.0}
    (root / case / "truth.json").write_text(json.dumps(truth))
    doc = {"regions": {side: {c: _region() for c in REGION_CODES} for side in ("left", "right")}}
    doc["regions"]["left"].update(regions_left)
    (runs / case).mkdir(parents=True)
    (runs / case / "aspects.json").write_text(json.dumps(doc))


def test_rules_rescore_the_app_calls_as_the_evaluation_counts_them(tmp_path):
    cases, runs = tmp_path / "cases", tmp_path / "runs"
    # acute: M2 truly involved and called by a 12 % mask sliver over darker tissue; L a false sliver
    _study(cases, runs, "a", "acute", ["M2", "I"], {
        "M2": _region(True, 0.12, ("mask",), delta=0.8), "L": _region(True, 0.11, ("mask",), delta=0.1),
        "I": _region(False, 0.0, (), delta=1.0, z=4.0, pz=6.0)})
    # normal control: a false sliver in M4 costs a point
    _study(cases, runs, "n", "normal", [], {"M4": _region(True, 0.13, ("mask",), delta=0.2)})
    regions = regions_of(cases, runs)
    assert len(regions) == 40
    base = figures(regions, shipped)
    assert (base["true_calls"], base["false_calls"], base["control_points"]) == (1, 2, 1)
    # left of "a": a false call and a miss cancel in the score (8 = 8); left of "n": 9 against 10
    assert base["sum_abs_error"] == 1 and base["sens_3_4"] == 0.5 and base["exact"] == 0.75
    support = figures(regions, mask_support(0.15, 0.3))  # both false slivers go, the darker true one stays
    assert (support["true_calls"], support["false_calls"], support["control_points"]) == (1, 0, 0)
    assert support["sum_abs_error"] == 1 and support["within1"] == 1.0
    both = figures(regions, joint(0.9, 3.5, 5.0))  # adds the insula, whose three statistics agree
    assert both["true_calls"] == 2 and both["sens_3_4"] == 1.0
    bands = dict((name, (n, wrong, truly)) for name, n, wrong, truly in error_bands(regions))
    assert bands["0"] == (37, 1, 1) and bands["0.10-0.20"] == (3, 2, 0)
    # the ASPECTS range with the marginal calls of 0.07-0.25 flipped: study "a" left shows 8 with
    # M2 and L marginal (both called): 8-10, truth 8; "n" left 9-10, truth 10; right sides 10-10
    rng = range_figures(regions, (0.07, 0.25))
    assert (rng["coverage"], rng["mean_width"], rng["hemispheres"]) == (1.0, 0.75, 4)
    assert range_figures(regions, (0.07, 0.10))["coverage"] == 0.75  # no marginal call: "n" left 9 misses its 10
