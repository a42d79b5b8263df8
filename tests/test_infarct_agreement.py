"""aspects_research.tools.infarct_agreement: the app's infarct masks against a researcher's own
reference masks (real studies without ASPECTS truth), whatever axis order the masks are stored in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from aspects_research.tools.infarct_agreement import main

SPACING = (0.5, 0.5, 5.0)  # x, y, z (mm): a 5 mm series
ORIGIN = (-32.0, -30.0, -60.0)


def _mask(blocks) -> sitk.Image:
    """A (z, y, x) = (12, 128, 128) mask on the series grid (LPS axes, as the app writes it)."""
    a = np.zeros((12, 128, 128), np.uint8)
    for z, y, x in blocks:
        a[z, y, x] = 1
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def _run(runs: Path, name: str, mask: sitk.Image, aspects: dict) -> None:
    (runs / name / "nifti").mkdir(parents=True)
    sitk.WriteImage(mask, str(runs / name / "nifti" / "infarct.nii.gz"))
    (runs / name / "aspects.json").write_text(json.dumps({"aspects": aspects, "flags": []}))


def test_agreement_per_study_and_summary_with_references_stored_in_ras_order(tmp_path: Path, capsys):
    runs, masks = tmp_path / "runs", tmp_path / "masks"
    masks.mkdir()
    lesion = (slice(4, 8), slice(40, 80), slice(20, 60))  # 4 x 40 x 40 voxels of 0.5 x 0.5 x 5 mm = 8 ml
    half = (slice(4, 8), slice(40, 80), slice(20, 40))  # the app finds half of it
    _run(runs, "a_found", _mask([lesion]), {"left": 4, "right": 10})
    _run(runs, "b_half", _mask([half]), {"left": 8, "right": 10})
    _run(runs, "c_missed", _mask([]), {"left": 10, "right": 10})
    _run(runs, "d_false", _mask([half]), {"left": 9, "right": 10})
    _run(runs, "e_normal", _mask([]), {"left": 10, "right": 10})
    ras = lambda img: sitk.DICOMOrient(img, "RAS")  # noqa: E731 - as dcm2niix and most NIfTI tools store them
    for name, blocks in (("a_found", [lesion]), ("b_half", [lesion]), ("c_missed", [lesion]), ("d_false", []),
                         ("e_normal", []), ("f_no_run", [lesion])):
        sitk.WriteImage(ras(_mask(blocks)), str(masks / f"{name}.nii.gz"))
    _run(runs, "g_elsewhere", _mask([]), {"left": 10, "right": 10})
    elsewhere = _mask([lesion])
    elsewhere.SetOrigin((ORIGIN[0] + 200.0, ORIGIN[1], ORIGIN[2]))  # another study's space: not a normal study
    sitk.WriteImage(elsewhere, str(masks / "g_elsewhere.nii.gz"))

    assert main(["--runs", str(runs), "--masks", str(masks), "--json", str(tmp_path / "agree.json")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "agree.json").read_text())
    cases = {c["case"]: c for c in data["cases"]}
    assert cases["a_found"]["dice"] == 1.0 and abs(cases["a_found"]["truth_ml"] - 8.0) < 1e-9
    assert abs(cases["b_half"]["dice"] - 2 / 3) < 1e-9 and abs(cases["b_half"]["pred_ml"] - 4.0) < 1e-9
    assert cases["c_missed"]["dice"] == 0.0 and cases["c_missed"]["detection"] == "fn"
    assert cases["d_false"]["detection"] == "fp" and cases["e_normal"]["detection"] == "tn"
    s = data["summary"]
    assert s["n"] == 5 and s["n_lesion"] == 3 and s["detection"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 1}
    assert abs(s["dice"]["median"] - 2 / 3) < 1e-9
    assert data["missing"]["f_no_run"] == f"no app result in {runs / 'f_no_run'} (aspects.json and nifti/infarct.nii.gz)"
    assert data["missing"]["g_elsewhere"].startswith("error[2]: g_elsewhere.nii.gz does not fit the app's result of "
                                                     "g_elsewhere: its lesion reaches")
    assert sorted(data["missing"]) == ["f_no_run", "g_elsewhere"]
    assert "| a_found | 8.0 | 8.0 | 1.00 |" in out and "| 4 / 10 |" in out
    assert "Detection: TP 2, FN 1, FP 1, TN 1." in out and "not compared: f_no_run" in out


def test_no_masks_is_a_usage_error(tmp_path: Path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "masks").mkdir()
    assert main(["--runs", str(tmp_path / "runs"), "--masks", str(tmp_path / "masks")]) == 2
    assert capsys.readouterr().err.startswith("error[2]: no reference masks (.nii / .nii.gz) in ")
