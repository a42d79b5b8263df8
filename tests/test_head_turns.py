"""aspects_research.tools.head_turns: each study's head turn as the app reads it, and which of them
would start the registration turned."""

from __future__ import annotations

from pathlib import Path

from aspects_research.tools import head_turns


def test_a_phantom_lying_within_the_pose_range_does_not_start_turned(phantom_case, capsys):
    study = phantom_case(9, kind="normal", thickness=5.0) / "dicom"
    assert head_turns.main([str(study)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    turn = float(lines[0].split(": ")[1].split(" deg")[0])
    assert abs(turn) <= 25.0 and "starts turned" not in lines[0]  # phantoms: yaw within 15 deg of the head's own
    assert lines[-1].startswith("1 studies:") and lines[-1].endswith("0 beyond 25 deg")


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path, capsys):
    assert head_turns.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error[2]: not a folder: {tmp_path / 'nope'}"
