"""aspects_research.tools.volume_loss_sweep: the veto re-applied to an aspects.json at another
threshold gives the calls, ASPECTS and side the app gives at that threshold."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from aspects.flags import Findings
from aspects.labels import label_value
from aspects.region_evidence import VolumeLossCalibration, study_evidence
from aspects.scoring import score
from aspects_research.tools import volume_loss_sweep as vls
from tests.test_region_evidence import SHAPE, _calibration, _difference, _head


def _document(max_excess: float) -> dict:
    """aspects.json content of a study with an acute left M5 and a left M3 whose CSF share is 1/7
    above its mirror's, scored with the veto at ``max_excess``."""
    cal = dataclasses.replace(_calibration(), volume_loss=VolumeLossCalibration(max_excess=max_excess))
    hu, brain, regions = _head({("left", "M3"): 1})
    diff = _difference(np.random.default_rng(3), drop={("left", "M3"): 5.0, ("left", "M5"): 5.0})
    empty = np.zeros(SHAPE, bool)
    found = Findings(blood=empty, old_infarct=empty, spacing_mm=(2.0, 2.0, 2.0))
    mask = (regions == label_value("left", "M3")) | (regions == label_value("left", "M5"))
    ev, calls, _ = study_evidence(found, diff, np.ones(SHAPE, bool), regions, cal, mask, hu=hu, brain=brain)
    r = score(regions, mask, (2.0, 2.0, 2.0), evidence=ev, evidence_calls=calls)
    return {"regions": r.regions_json(), "aspects": r.aspects, "affected_side": r.affected_side,
            "score": r.score, "infarct_volume_ml": r.infarct_volume_ml}


def test_rescoring_a_run_equals_the_app_at_that_threshold(tmp_path):
    vetoed, kept = _document(0.04), _document(0.5)
    assert vetoed["aspects"]["left"] == 9 and kept["aspects"]["left"] == 8
    for doc in (vetoed, kept):
        for t, other in ((0.04, vetoed), (0.5, kept), (math.inf, kept)):
            back = vls.rescored(doc, t)
            assert (back["aspects"], back["affected_side"], back["score"]) == \
                (other["aspects"], other["affected_side"], other["score"])
            assert back["regions"]["left"]["M3"]["involved"] is other["regions"]["left"]["M3"]["involved"]
    m3 = vls.rescored(kept, 0.04)["regions"]["left"]["M3"]
    assert m3["withdrawn_calls"] == ["mask", "evidence"] and m3["evidence"]["volume_loss_veto"]
    assert not m3["evidence"]["called"] and m3 == vetoed["regions"]["left"]["M3"]

    # the sweep over a folder of runs: truth says left M5 only, so left M3 is a false call
    cases, runs = tmp_path / "cases" / "s1", tmp_path / "runs" / "s1"
    cases.mkdir(parents=True), runs.mkdir(parents=True)
    (cases / "truth.json").write_text(json.dumps({"kind": "acute", "involved": {"left": ["M5"], "right": []},
                                                  "infarct_volume_ml": 5.0}))
    (runs / "aspects.json").write_text(json.dumps(vetoed))
    (runs / "seg.dcm").write_bytes(b"x")
    got = vls.sweep(cases.parent, runs.parent, (0.04, math.inf))
    assert got == {0.04: (1, 0, 0), math.inf: (1, 1, 0)}
    inv, no_old = vls.largest_shares(cases.parent, runs.parent)
    assert inv[2] == "left M5" and no_old[2] == "left M3" and no_old[0] > 0.1
    assert vls.main(["--set", f"{cases.parent}:{runs.parent}", "--rescore", str(tmp_path / "out"),
                     "--threshold", "inf"]) == 0
    assert json.loads((tmp_path / "out" / "s1" / "aspects.json").read_text())["aspects"] == kept["aspects"]
    assert (tmp_path / "out" / "s1" / "seg.dcm").read_bytes() == b"x"
