"""An old (chronic) infarct in an ASPECTS region costs no point where its volume loss shows: the
generator-v2 old-infarct control in the M3 shape on the scct head at 1 mm (make_v2_data.sh
old_patterns, seed 3010), whose gliotic rim and opened sulci make the region darker than its
mirror, is scored 10 / 10 with the region's volume-loss veto set (docs/results_v2.md,
"Volume-loss veto"). Until session 23 the region's evidence called it alone and the veto withdrew
that call (without the veto: L9); since then an evidence call needs the acute mask in the region,
which the model leaves empty here, so the call is reported as not counted for that reason and
the veto has nothing left to withdraw. Since session 24 the old infarct's cavity seen on the
source slices joins the old-infarct finding, whose surroundings the region evidence leaves out,
so the evidence may not call the region at all. The shipped calibration reports the share without applying
the veto (a real head's natural asymmetry reaches the threshold), so the test turns it on as a
site would (``volume_loss.applies``)."""

from __future__ import annotations

import pytest

from tests.support.app_runs import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_an_old_m3_infarct_with_volume_loss_costs_no_point(pipeline, tmp_path, monkeypatch):
    import dataclasses

    from aspects.assess import ScoringSettings
    from aspects.region_evidence import load_calibration
    from aspects_research.tools import make_phantoms

    shipped = load_calibration()
    rule = dataclasses.replace(shipped.volume_loss, applies=True)
    monkeypatch.setattr(pipeline, "settings", ScoringSettings(calibration=dataclasses.replace(shipped, volume_loss=rule)))

    cases = tmp_path / "cases"
    assert make_phantoms.main(["--generator", "v2", "--out", str(cases), "--split", "test", "--kind", "old_infarct",
                               "--anatomy", "scct", "--pattern", "M3", "--thickness", "1", "--seed", "3010"]) == 0
    (case,) = [p for p in cases.iterdir() if (p / "dicom").is_dir()]
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    m3 = run.result["regions"]["left"]["M3"]
    assert run.result["aspects"] == {"right": 10, "left": 10}, run.result["aspects"]
    assert run.result["thresholds"]["evidence"]["volume_loss"]["applies"] is True
    assert m3["involved"] is False and m3["evidence"]["volume_loss"] > rule.max_excess and m3["evidence"]["volume_loss_veto"]
    # the region is darker than its mirror: its evidence, where it passes, is not counted (no mask
    # there) or, where a mask reached it, withdrawn by the veto; or the old infarct explains it
    assert not m3["evidence"]["called"] or m3.get("evidence_without_mask") or m3.get("withdrawn_calls"), m3
    # no other region of this head reaches the veto (the rule is about the old infarct's region)
    assert [f"{s} {c}" for s, per in run.result["regions"].items() for c, r in per.items()
            if r["evidence"]["volume_loss_veto"]] == ["left M3"]
