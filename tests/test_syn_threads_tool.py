"""aspects_research.tools.syn_threads: the per-study check behind the two-thread mirror SyN."""

from __future__ import annotations

import json

import pytest

from aspects_research.tools import make_phantoms, syn_threads


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert syn_threads.main(["--cases", str(tmp_path / "nope")]) == 2
    assert syn_threads.main(["--cases", str(tmp_path)]) == 2
    assert "no case with a truth.json" in capsys.readouterr().err
    (tmp_path / "c" / "dicom").mkdir(parents=True)
    (tmp_path / "c" / "truth.json").write_text("{}")
    assert syn_threads.main(["--cases", str(tmp_path), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("error[2]: --threads 1")


@pytest.mark.slow
def test_a_study_gets_the_same_mirror_warp_on_two_threads(tmp_path, capsys):
    assert make_phantoms.main(["--out", str(tmp_path / "cases"), "--count", "1", "--seed", "7", "--kind", "acute",
                               "--thickness", "5", "--matrix", "256"]) == 0
    assert syn_threads.main(["--cases", str(tmp_path / "cases"), "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 1 and rows[0]["same"] and rows[0]["max_abs_hu"] == 0.0
    assert "1 of 1 studies: the same warp" in capsys.readouterr().out
