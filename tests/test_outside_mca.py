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

# Known limitation (docs/results.md): the shipped infarct model was trained on atlas-v1 phantoms
# with MCA infarcts only. On v2 phantoms a thalamic lesion is missed or its segmentation spills
# into the adjacent internal capsule / lentiform (>= 10 % of these small regions), and cerebellar
# cases carry false positives at the SG level, so these two fail until the model is retrained on
# v2 phantoms with posterior-circulation cases (issue 13). The phantom truth for both is tested in
# tests/test_phantoms.py. Still failing (2026-12-02) with model 0.3.0, fine-tuned for 15 epochs on 49
# generator-v2 studies (about 12 % of acute v2 lesions lie outside the MCA territory): a longer
# training on more v2 studies is what remains.
_RETRAIN = "infarct model 0.2.0 trained on MCA phantoms only; 0.3.0's short v2 fine-tune did not fix it (issue 13)"
PATTERNS = ("aca", "pca", pytest.param("thalamus", marks=pytest.mark.xfail(reason=_RETRAIN)),
            pytest.param("cerebellum", marks=pytest.mark.xfail(reason=_RETRAIN)))
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
