"""Negative controls through the whole pipeline (in-process): acute infarcts outside the MCA territory (issue 12).

ASPECTS scores the MCA territory only. An ACA, PCA, thalamic or cerebellar infarct must be
segmented and its volume reported, must not cost an ASPECTS point on either side, and must raise
``infarct_outside_mca`` with its volume. One run per pattern (~40-70 s each on two cores).
"""

from __future__ import annotations

import json

import pytest

from tests.support.app_runs import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Known limitation (docs/results.md): the infarct model's first versions were trained on atlas-v1
# phantoms with MCA infarcts only. On v2 phantoms a thalamic lesion is missed or its segmentation
# spilt into the adjacent internal capsule / lentiform (>= 10 % of these small regions). The
# thalamic case still fails with model 0.5.0 (2026-12-05; the cerebellar case, which failed with 0.3.0 by false
# positives at the SG level, passes since 0.5.0); the phantom truth is tested in tests/test_phantoms.py.
_RETRAIN = "infarct model 0.5.0 (v2 fine-tunes of a model first trained on MCA phantoms) still fails the thalamic case (issue 13)"
PATTERNS = ("aca", "pca", pytest.param("thalamus", marks=pytest.mark.xfail(reason=_RETRAIN)), "cerebellum")
SEEDS = {"aca": 2061, "pca": 2062, "thalamus": 2063, "cerebellum": 2064}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_infarct_outside_the_mca_is_found_flagged_and_costs_no_point(pattern, phantom_case, pipeline, tmp_path):
    case = phantom_case(SEEDS[pattern], kind="acute", pattern=pattern, thickness=5.0, hu_drop=9.0)
    truth = json.loads((case / "truth.json").read_text())
    assert truth["aspects"] == {"left": 10, "right": 10} and truth["infarct_outside_mca_ml"] > 2.0
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out" / "aspects.json").read_text())
    assert result["aspects"] == {"left": 10, "right": 10} and result["score"] == 10
    # Found, though underestimated: the shipped model never saw an infarct outside the MCA
    # territory in training (ACA 2026-12-02: 20.7 of 78.6 ml; docs/results.md).
    assert result["infarct_volume_ml"] >= max(2.0, 0.2 * truth["infarct_volume_ml"]), (result["infarct_volume_ml"], truth)
    assert "infarct_outside_mca" in result["flags"], result["flags"]
    assert result["flag_details"]["infarct_outside_mca"]["volume_ml"] >= 1.0
