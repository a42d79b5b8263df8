"""The extra-axial finding's calibration tool (aspects-extra-axial-calibration): on a normal head
its largest component stays below the finding's least size; on the same head with a simulated
10 mm acute subdural haematoma it is found, on the collection's side."""

from __future__ import annotations

import json

import pytest

from aspects.extra_axial import MIN_EXTRA_AXIAL_ML
from aspects_research.tools.extra_axial_calibration import build_subdural, largest_component_ml, main


@pytest.mark.slow
def test_a_normal_head_stays_under_the_least_size_and_its_haematoma_copy_is_found(phantom_case, tmp_path, capsys):
    normal = phantom_case(31, kind="normal", thickness=5.0)
    assert largest_component_ml(normal)["largest_ml"] < MIN_EXTRA_AXIAL_ML
    made = build_subdural(normal, tmp_path / "sdh", 0)
    assert [c.name.split("_")[-2] for c in made] == ["acute4", "acute6", "acute10", "chronic8"]
    acute10 = made[2]
    truth = json.loads((acute10 / "truth.json").read_text())
    assert main([str(acute10), "--jsonl", str(tmp_path / "rows.jsonl")]) == 0
    row = json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[0])
    assert row["found"] and row["largest_ml"] >= MIN_EXTRA_AXIAL_ML and row["found_side"] == truth["side"], row
    assert "least size of the finding" in capsys.readouterr().out
