"""The archived-split manifest (aspects_research/tools/split_manifest.py): a rebuilt split is
checked against the archived one by content, not by file bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom

from aspects_research.tools import split_manifest as sm


def _split(phantom_case, tmp_path: Path) -> Path:
    cases = tmp_path / "split"
    for seed, kind in ((41, "acute"), (42, "normal")):
        shutil.copytree(phantom_case(seed, kind=kind), cases / f"phantom_{seed:06d}")
    return cases


def test_a_rebuilt_split_is_checked_by_content(phantom_case, tmp_path, capsys):
    cases = _split(phantom_case, tmp_path)
    manifest = tmp_path / "v2_test.json"
    assert sm.main(["--cases", str(cases), "--write", str(manifest)]) == 0
    entries = json.loads(manifest.read_text())["studies"]
    assert [e["study"] for e in entries] == ["phantom_000041", "phantom_000042"]
    assert entries[0]["kind"] == "acute" and len(entries[0]["ct_sha256"]) == 64
    assert sm.main(["--cases", str(cases), "--check", str(manifest)]) == 0

    # A header-only change (what a new pydicom may write) is the same study ...
    first = sorted((cases / "phantom_000041" / "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.StudyDescription = "rewritten"
    ds.save_as(first)
    assert sm.main(["--cases", str(cases), "--check", str(manifest)]) == 0
    # ... one changed CT value is not, and the check names the study and what differs.
    arr = ds.pixel_array.copy()
    arr[100, 100] += 1
    ds.PixelData = arr.tobytes()
    ds.save_as(first)
    shutil.rmtree(cases / "phantom_000042")
    capsys.readouterr()
    assert sm.main(["--cases", str(cases), "--check", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "phantom_000041: differs in ct_sha256" in out
    assert "phantom_000042: missing from the folder" in out


def test_bad_folders_get_one_line_errors(tmp_path, capsys):
    assert sm.main(["--cases", str(tmp_path / "nope"), "--write", str(tmp_path / "m.json")]) == 2
    assert "error[2]" in capsys.readouterr().err
    assert sm.main(["--cases", str(tmp_path), "--write", str(tmp_path / "m.json")]) == 2
    assert "no phantom studies" in capsys.readouterr().err
