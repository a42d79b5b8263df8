"""aspects_research.tools.paired_runs: two evaluated sets of the same seeds, study by study."""

from __future__ import annotations

import json
from pathlib import Path

from aspects_research.tools import paired_runs


def _study(root: Path, name: str, kind: str, truth: dict, app: dict, flags=(), ncc: float = 0.8) -> None:
    case, run = root / "cases" / name, root / "runs" / name
    case.mkdir(parents=True)
    run.mkdir(parents=True)
    (case / "truth.json").write_text(json.dumps({"kind": kind, "anatomy": "ge", "aspects": truth}))
    (run / "aspects.json").write_text(json.dumps({"aspects": app, "infarct_volume_ml": 0.0, "flags": list(flags),
                                                  "qc": {"ncc": ncc}}))


def test_pairs_count_changes_errors_control_points_and_flags(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    # an acute study whose right score moves away from the truth, and whose truth changes on the left
    _study(a, "s1", "acute", {"left": 7, "right": 10}, {"left": 7, "right": 10})
    _study(b, "s1", "acute", {"left": 8, "right": 10}, {"left": 7, "right": 9})
    # a control that loses a point and gains a flag, its registration worse
    _study(a, "s2", "normal", {"left": 10, "right": 10}, {"left": 10, "right": 10}, ncc=0.86)
    _study(b, "s2", "normal", {"left": 10, "right": 10}, {"left": 9, "right": 10}, ["old_infarct_suspected"], ncc=0.61)
    _study(b, "s3", "normal", {"left": 10, "right": 10}, {"left": 10, "right": 10})  # in one set only
    assert paired_runs.main(["--a", str(a / "cases"), str(a / "runs"), "--b", str(b / "cases"), str(b / "runs"),
                             "--json", str(tmp_path / "p.json")]) == 0
    s = json.loads((tmp_path / "p.json").read_text())["summary"]
    assert s["studies"] == 2 and s["hemispheres"] == 4
    assert s["score_changed"] == 2 and s["truth_changed"] == 1
    assert s["error_worse"] == 3 and s["error_better"] == 0  # s1 left 0 -> 1, s1 right 0 -> 1, s2 left 0 -> 1
    assert s["control_points_a"] == 0 and s["control_points_b"] == 1
    assert s["flags_gained"] == {"old_infarct_suspected": ["s2"]} and s["flags_lost"] == {}
    assert s["ncc_fell"] == ["s2"]
    assert "2 studies in both" in capsys.readouterr().out


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert paired_runs.main(["--a", str(tmp_path / "no"), str(tmp_path), "--b", str(tmp_path), str(tmp_path)]) == 2
    assert capsys.readouterr().out.strip() == f"error[2]: no folder {tmp_path / 'no'}"
