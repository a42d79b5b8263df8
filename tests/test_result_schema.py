"""aspects.json schema 2: the "not assessable" contract (docs: CONTRACTS / README Outputs)."""

from __future__ import annotations

import copy

import numpy as np

from aspects.labels import REGION_CODES, SIDES, label_value
from aspects.result_json import INCOMPLETE_COVERAGE, SCHEMA_VERSION, problems
from aspects.scoring import assessable_regions, score


def _result(coverage_left_m6: float = 1.0) -> dict:
    lab = np.zeros((20, 4, 8), np.uint8)
    for i, code in enumerate(REGION_CODES):
        lab[2 * i:2 * i + 2, :, :4] = label_value("right", code)
        lab[2 * i:2 * i + 2, :, 4:] = label_value("left", code)
    inf = lab == label_value("right", "M2")
    cov = {v: 1.0 for v in range(1, 21)}
    cov[label_value("left", "M6")] = coverage_left_m6
    r = score(lab, inf, (1, 1, 1), assessable=assessable_regions(cov))
    flags = [INCOMPLETE_COVERAGE] if r.not_assessable else []
    return {
        "schema_version": SCHEMA_VERSION, "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.4",
        "affected_side": r.affected_side, "aspects": dict(r.aspects), "score": r.score,
        "infarct_volume_ml": r.infarct_volume_ml, "regions": r.regions_json(), "flags": flags,
        "flag_details": {INCOMPLETE_COVERAGE: {"regions": r.not_assessable}} if flags else {},
        "methods": {"regions": "atlas", "infarct": "asymmetry"}, "device": "cpu", "timings_s": {},
        "outputs": {}, "not_for_diagnostic_use": True, "app": {"name": "a", "version": "1"},
    }


def test_not_assessable_result_is_valid_and_has_no_score_for_that_side():
    d = _result(coverage_left_m6=0.5)
    assert problems(d) == []
    assert d["aspects"] == {"right": 9, "left": None} and d["score"] == 9
    assert d["regions"]["left"]["M6"] == {**d["regions"]["left"]["M6"], "assessable": False, "involved": None}


def test_inconsistent_not_assessable_results_are_named():
    d = _result(coverage_left_m6=0.5)
    bad = copy.deepcopy(d)
    bad["aspects"]["left"] = 10  # a side with a region not covered cannot be scored normal
    assert any("aspects.left = 10 but a region is not assessable" in p for p in problems(bad))
    bad = copy.deepcopy(d)
    bad["regions"]["left"]["M6"]["involved"] = False
    assert any("must be null when the region is not assessable" in p for p in problems(bad))
    bad = copy.deepcopy(d)
    bad["flags"] = []
    assert any(INCOMPLETE_COVERAGE in p for p in problems(bad))
    bad = copy.deepcopy(d)
    bad["flag_details"][INCOMPLETE_COVERAGE]["regions"] = ["right M6"]
    assert any("flag_details.incomplete_coverage.regions" in p for p in problems(bad))


def test_fully_covered_and_version_1_results_still_validate():
    d = _result()
    assert problems(d) == [] and d["score"] == 9 and None not in d["aspects"].values()
    v1 = copy.deepcopy(d)
    v1["schema_version"] = 1
    for side in SIDES:
        for code in REGION_CODES:
            del v1["regions"][side][code]["assessable"]  # readers treat a missing key as assessable
    assert problems(v1) == []
    v1["aspects"]["left"] = None  # version 1 has no nulls
    assert any(p.startswith("aspects:") for p in problems(v1))


def test_how_a_model_ran_is_checked_where_given():
    d = _result()
    d["methods"] = {"regions": "atlas", "infarct": "model",
                    "infarct_model": {"version": "0.5.0", "second_channel": "contra", "mirror_tta": "agree"}}
    assert problems(d) == []
    d["methods"]["infarct_model"]["version"] = None  # a model that declares no version
    assert problems(d) == []
    d["methods"]["infarct_model"]["mirror_tta"] = "maybe"
    assert any(p.startswith("methods.infarct_model: expected second_channel") for p in problems(d))
    d["methods"]["infarct_model"]["mirror_tta"] = "agree"
    d["methods"]["infarct"] = "asymmetry"  # no model ran: no record of how one ran
    assert any("methods.infarct_model: given although methods.infarct is 'asymmetry'" in p for p in problems(d))
    d["methods"] = {"regions": "model", "infarct": "asymmetry", "region_model": {"version": 3}}
    assert any(p.startswith("methods.region_model: needs 'version'") for p in problems(d))
