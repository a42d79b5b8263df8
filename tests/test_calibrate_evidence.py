"""aspects-calibrate-evidence: normal studies' aspects.json in, a calibration the app reads out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aspects.labels import REGION_CODES, SIDES
from aspects.region_evidence import load_calibration
from aspects_research.tools import calibrate_evidence as ce


def _runs(tmp_path, kinds, sd=1.0, seed=0):
    rng = np.random.default_rng(seed)
    runs, cases = tmp_path / "runs", tmp_path / "cases"
    for i, kind in enumerate(kinds):
        name = f"case{i:02d}"
        regions = {s: {c: {"involved": False, "infarct_fraction": 0.0, "infarct_ml": 0.0,
                           "evidence": {"delta_hu": float(rng.normal(0, sd) + (8.0 if kind == "acute" else 0.0)),
                                        "z": None, "n_voxels": 400, "called": False}}
                       for c in REGION_CODES} for s in SIDES}
        (runs / name).mkdir(parents=True)
        (runs / name / "aspects.json").write_text(json.dumps({"regions": regions}))
        (cases / name).mkdir(parents=True)
        (cases / name / "truth.json").write_text(json.dumps({"kind": kind}))
    return runs, cases


def test_calibration_from_normal_runs_only(tmp_path, capsys):
    runs, cases = _runs(tmp_path, ["normal"] * 30 + ["acute"] * 3)
    out = tmp_path / "cal.json"
    assert ce.main(["--runs", str(runs), "--cases", str(cases), "--out", str(out), "--fpr", "0.01"]) == 0
    cal = load_calibration(out)
    assert cal.n_studies == 30  # the acute studies (8 HU darker everywhere) are not part of the null
    assert all(0.65 < cal.sigma_hu[c] < 1.4 for c in REGION_CODES), cal.sigma_hu  # MAD of 60 draws of SD 1
    text = capsys.readouterr().out
    assert "calibration set:" in text and "| M6 |" in text


def test_held_out_check_counts_calls(tmp_path, capsys):
    runs, cases = _runs(tmp_path / "a", ["normal"] * 20)
    held, held_cases = _runs(tmp_path / "b", ["normal"] * 5 + ["acute"], seed=1)
    out = tmp_path / "cal.json"
    assert ce.main(["--runs", str(runs), "--cases", str(cases), "--out", str(out),
                    "--check", str(held), "--check-cases", str(held_cases)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("held-out normals")][0]
    assert "in 5 studies" in line  # the acute check case is not counted as a normal


def test_too_few_normals_is_a_usage_error(tmp_path, capsys):
    runs, cases = _runs(tmp_path, ["normal"] * 3 + ["acute"] * 5)
    assert ce.main(["--runs", str(runs), "--cases", str(cases), "--out", str(tmp_path / "c.json")]) == 2
    assert "3 normal studies with evidence found; at least 5 are needed" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("fpr", ["0", "0.7"])
def test_bad_rate_is_refused(tmp_path, fpr, capsys):
    runs, cases = _runs(tmp_path, ["normal"] * 6)
    assert ce.main(["--runs", str(runs), "--out", str(tmp_path / "c.json"), "--fpr", fpr]) == 2
    assert "--fpr must be in (0, 0.5)" in capsys.readouterr().err


def _cached(tmp_path, kinds, seed=0):
    """aspects-evidence-cache files: noise difference maps over two mirrored region blocks per code."""
    from aspects.labels import label_value

    rng = np.random.default_rng(seed)
    shape = (10, 20, 40)
    labels = np.zeros(shape, np.uint8)
    for i, code in enumerate(REGION_CODES):
        labels[:, 2 * i:2 * i + 2, 2:18] = label_value("right", code)
        labels[:, 2 * i:2 * i + 2, 22:38] = label_value("left", code)
    paths = []
    for i, kind in enumerate(kinds):
        diff = rng.normal(0.0, 0.5, shape).astype(np.float32) + (6.0 if kind == "acute" else 0.0)
        path = tmp_path / f"case{i:02d}.npz"
        np.savez_compressed(path, difference=diff, comparable=np.ones(shape, bool), explained=np.zeros(shape, bool),
                            labels=labels, meta=np.array(json.dumps({"truth": {"kind": kind}})))
        paths.append(str(path))
    return paths


def test_calibration_from_the_evidence_cache_has_both_statistics(tmp_path, capsys):
    paths = _cached(tmp_path, ["normal"] * 6 + ["acute"])
    out = tmp_path / "cal.json"
    assert ce.main(["--cache", *paths, "--out", str(out), "--partial-min-delta", "1.5"]) == 0
    cal = load_calibration(out)
    assert cal.n_studies == 6 and cal.partial is not None and cal.partial.min_delta_hu == 1.5
    assert "--cache case00.npz" in cal.source and "--partial-min-delta 1.5" in cal.source
    assert "partial z_call" in capsys.readouterr().out


def test_recalibrating_the_evidence_keeps_the_mask_check(tmp_path):
    """The mask check has its own calibration (mask_check_compare); a fresh evidence calibration
    written over the file keeps it."""
    paths = _cached(tmp_path, ["normal"] * 6)
    out = tmp_path / "cal.json"
    out.write_text(json.dumps({"mask_check": {"min_masked_hu": 1.2, "source": "chunks"}}))
    assert ce.main(["--cache", *paths, "--out", str(out)]) == 0
    cal = load_calibration(out)
    assert cal.n_studies == 6 and cal.mask_check is not None and cal.mask_check.min_masked_hu == 1.2
