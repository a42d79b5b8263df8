"""aspects-evaluate on tiny fabricated case and run folders with known masks (not the app)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from aspects_research.tools import evaluate as ev

SHAPE = (6, 12, 12)  # (z, y, x)
SPACING_XYZ = (1.0, 1.0, 5.0)  # 5 mm voxels: 0.005 ml


def write_mask(path: Path, arr: np.ndarray, origin=(0.0, 0.0, 0.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def box(z0, z1, y0, y1, x0, x1) -> np.ndarray:
    a = np.zeros(SHAPE, np.uint8)
    a[z0:z1, y0:y1, x0:x1] = 1
    return a


def region_map() -> np.ndarray:
    r = np.zeros(SHAPE, np.uint8)
    r[:, :6, :6] = 15  # left M1
    r[:, 6:, :6] = 16  # left M2
    r[:, :, 6:] = 5  # right M1
    return r


def make_case(root: Path, cid: str, kind: str, truth_inf, truth_score, side, involved, hu):
    c = root / "cases" / cid
    write_mask(c / "truth" / "infarct.nii.gz", truth_inf)
    write_mask(c / "truth" / "regions.nii.gz", region_map())
    aspects = {"left": 10, "right": 10}
    if side:
        aspects[side] = truth_score
    (c / "truth.json").write_text(json.dumps({
        "kind": kind, "affected_side": side, "aspects": aspects, "involved": {"left": involved, "right": []},
        "infarct_volume_ml": float(truth_inf.sum()) * 0.005, "hu_drop": hu, "slice_thickness_mm": 5.0, "seed": 1}))


def make_run(root: Path, cid: str, pred_inf, score, side, involved, flags=(), regions=None, origin=(0.0, 0.0, 0.0)):
    o = root / "runs" / cid
    write_mask(o / "nifti" / "infarct.nii.gz", pred_inf, origin)
    write_mask(o / "nifti" / "regions.nii.gz", region_map() if regions is None else regions, origin)
    aspects = {"left": 10, "right": 10}
    if side:
        aspects[side] = score
    regs = {s: {c: {"involved": s == "left" and c in involved, "infarct_fraction": 0.0, "infarct_ml": 0.0}
                for c in ("C", "L", "IC", "I", "M1", "M2", "M3", "M4", "M5", "M6")} for s in ("left", "right")}
    (o / "aspects.json").write_text(json.dumps({
        "schema_version": 1, "affected_side": side, "aspects": aspects, "score": score,
        "infarct_volume_ml": float(pred_inf.sum()) * 0.005, "regions": regs, "flags": list(flags),
        "methods": {"regions": "atlas", "infarct": "asymmetry"}, "timings_s": {"load": 1.0, "infarct": 2.0}}))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    truth_a = box(1, 5, 2, 6, 1, 5)  # 64 voxels
    make_case(root, "a_acute", "acute", truth_a, 8, "left", ["M1", "M2"], 5.0)
    make_run(root, "a_acute", box(1, 5, 2, 6, 3, 7), 8, "left", ["M1", "M2"])  # half overlap: Dice 0.5
    truth_b = box(0, 6, 6, 10, 1, 4)
    make_case(root, "b_acute", "acute", truth_b, 7, "left", ["M1", "M2", "M3"], 11.0)
    bad_regions = region_map()
    bad_regions[:, :, :3] = 0  # left M1 and M2 lose half their voxels: Dice 2/3
    make_run(root, "b_acute", truth_b, 9, "left", ["M2"], regions=bad_regions)
    empty = np.zeros(SHAPE, np.uint8)
    make_case(root, "c_normal", "normal", empty, 10, None, [], 0.0)
    make_run(root, "c_normal", empty, 10, None, [])
    make_case(root, "d_haem", "haemorrhage", empty, 10, None, [], 0.0)
    make_run(root, "d_haem", box(2, 3, 2, 3, 2, 3), 10, None, [], flags=["haemorrhage_suspected"])
    make_case(root, "e_missing", "acute", truth_a, 8, "left", ["M1"], 7.0)
    make_case(root, "f_grid", "acute", truth_a, 8, "left", ["M1"], 7.0)
    make_run(root, "f_grid", truth_a, 8, "left", ["M1"], origin=(0.0, 0.0, 2.5))  # a half-slice shift
    rc = ev.main(["--cases", str(root / "cases"), "--runs", str(root / "runs"), "--report", str(root / "rep" / "results")])
    assert rc == 0
    return root, json.loads((root / "rep" / "results.json").read_text())


def test_failed_cases_are_listed_not_fatal(report):
    _, rep = report
    assert (rep["n_cases"], rep["n_ok"]) == (6, 4)
    failed = {f["case_id"]: f["error"] for f in rep["failed"]}
    assert set(failed) == {"e_missing", "f_grid"}
    assert "aspects.json" in failed["e_missing"] and "grid" in failed["f_grid"]


def test_infarct_metrics_and_breakdowns(report):
    _, rep = report
    acute = rep["infarct"]["acute"]
    assert acute["n"] == 2 and acute["dice"]["median"] == pytest.approx(0.75)
    # the normal control (both empty) is left out of Dice; the haemorrhage false positive counts 0
    allc = rep["infarct"]["all cases"]["dice"]
    assert allc["n"] == 3 and allc["median"] == pytest.approx(0.5)
    assert rep["infarct"]["all cases"]["hd95_mm"]["n"] == 2
    assert rep["infarct"]["hu_drop 4-6"]["dice"]["median"] == pytest.approx(0.5)
    assert rep["infarct"]["hu_drop >=10"]["dice"]["median"] == pytest.approx(1.0)
    assert "acute, > 70 ml" not in rep["infarct"]
    assert rep["detection"] == {"tp": 2, "tn": 1, "fp": 1, "fn": 0, "lesion_detection_rate": 1.0,
                                "correct_classification_rate": 0.75}
    assert rep["volume"]["bias_ml"] == pytest.approx(0.005 / 4)


def test_region_and_aspects_figures(report):
    _, rep = report
    per = rep["regions"]["per_region"]
    assert per["left M1"]["n"] == 4 and per["left M1"]["median"] == pytest.approx(1.0)
    assert per["left M1"]["ci_low"] < 1.0
    case_b = next(c for c in rep["cases"] if c["case_id"] == "b_acute")
    assert case_b["region_dice"]["15"] == pytest.approx(2 / 3) and case_b["region_dice"]["16"] == pytest.approx(2 / 3)
    assert per["right C"]["n"] == 0  # absent from truth and prediction everywhere
    acute = rep["aspects"]["acute"]
    assert (acute["n"], acute["exact"], acute["within_1"], acute["within_2"], acute["mae"]) == (2, 0.5, 0.5, 1.0, 1.0)
    assert rep["aspects"]["acute + normal + old infarct"]["n"] == 3
    cm = np.array(rep["aspects"]["confusion_matrix"])
    assert cm[8, 8] == 1 and cm[7, 9] == 1 and cm[10, 10] == 1 and cm.sum() == 3
    inv = rep["aspects"]["region_involvement"]
    assert (inv["M1"]["tp"], inv["M1"]["fn"], inv["M3"]["fn"], inv["M2"]["tp"]) == (1, 1, 1, 2)
    assert rep["aspects"]["side_accuracy"] == {"n": 2, "accuracy": 1.0}
    controls = {c["case_id"]: c["passed"] for c in rep["controls"]}
    assert controls == {"c_normal": True, "d_haem": True}
    assert rep["timings_s"]["infarct"]["median"] == 2.0


def test_range_coverage_counts_the_hemispheres_whose_truth_is_in_the_reported_range(report):
    recs = [{"truth_aspects": {"left": 7, "right": 10}, "pred_range": {"left": [6, 8], "right": [10, 10]}},
            {"truth_aspects": {"left": 5, "right": 10}, "pred_range": {"left": [7, 7], "right": None}},
            {"truth_aspects": {"left": 9, "right": 10}}]  # an aspects.json without a range: not counted
    cov = ev.range_coverage(recs)
    assert (cov["covered"]["k"], cov["covered"]["n"]) == (2, 3) and cov["mean_width"] == pytest.approx(2 / 3)
    _, rep = report  # the fabricated runs report no range: no coverage figure
    assert rep["aspects_range"]["covered"]["n"] == 0
    # the per-case table shows a range only where marginal calls widen it
    rec = {"pred_aspects": {"left": 7, "right": 10}, "pred_range": {"left": [6, 8], "right": [10, 10]}}
    assert (ev._reported(rec, "left"), ev._reported(rec, "right")) == ("7 (6-8)", "10")


def test_markdown_and_figures_written(report):
    root, _ = report
    md = (root / "rep" / "results.md").read_text()
    assert "| acute | 2 | 0.75 (0.50-1.00)" in md
    assert "e_missing" in md and not re.search(r"\|\s*nan|nan\s*\|", md.lower())
    for name in ("eval_bland_altman", "eval_confusion", "eval_region_dice", "eval_dice_vs_hu"):
        png = root / "rep" / "img" / f"{name}.png"
        assert png.stat().st_size > 5000 and f"img/{name}.png" in md


def test_a_set_of_controls_only_gets_its_report_and_figures(tmp_path):
    # make_v2_data.sh old_patterns is 16 old-infarct controls and no acute lesion: the detection
    # limit figure has no volume to place on its log axis, which must not end the evaluation
    empty = np.zeros(SHAPE, np.uint8)
    make_case(tmp_path, "o_old", "old_infarct", empty, 10, None, [], 0.0)
    make_run(tmp_path, "o_old", box(0, 6, 2, 10, 1, 6), 9, "left", ["M1"])  # scored as acute (1.2 ml): one point lost
    make_case(tmp_path, "o_normal", "normal", empty, 10, None, [], 0.0)
    make_run(tmp_path, "o_normal", empty, 10, None, [])
    assert ev.main(["--cases", str(tmp_path / "cases"), "--runs", str(tmp_path / "runs"),
                    "--report", str(tmp_path / "rep" / "r")]) == 0
    rep = json.loads((tmp_path / "rep" / "r.json").read_text())
    assert (tmp_path / "rep" / "img" / "eval_detection_limit.png").is_file()
    assert sum(c["points_lost"] for c in rep["controls"]) == 1 == rep["controls_points_lost"]
    # the old infarct read as acute is also counted as acute infarct reported on a control
    fa = rep["false_acute_on_controls"]
    old_ml = next(c["infarct_ml"] for c in rep["controls"] if c["case_id"] == "o_old")
    assert old_ml >= 1.0 and (fa["reporting"]["k"], fa["reporting"]["n"], fa["max_ml"]) == (1, 2, old_ml)
    md = (tmp_path / "rep" / "r.md").read_text()
    assert "Acute infarct reported on controls without one" in md and "1 of 2 report >= 1.0 ml" in md
    assert rep["by_anatomy"]["template"]["false_acute_on_controls"]["k"] == 1  # and per head, in its table
    assert re.search(r"\| template \| 2 \|.*\| 1 of 2 \|", md)


def test_acute_infarct_reported_on_a_control_is_counted_even_when_it_costs_no_point():
    rows = [{"kind": "leukoaraiosis", "infarct_ml": 12.5, "flags": ["infarct_outside_mca"], "points_lost": 0},
            {"kind": "normal", "infarct_ml": 0.4, "flags": [], "points_lost": 0},  # below the 1 ml floor
            {"kind": "old_infarct", "infarct_ml": 2.9, "flags": [], "points_lost": 1},
            {"kind": "acute outside MCA", "infarct_ml": 20.0, "flags": ["infarct_outside_mca"], "points_lost": 0}]
    fa = ev.false_acute_on_controls(rows)
    assert (fa["reporting"]["k"], fa["reporting"]["n"], fa["max_ml"], fa["outside_mca_flags"]) == (2, 3, 12.5, 1)
    assert ev._false_acute_lines(ev.false_acute_on_controls(rows[3:])) == []  # no such control: no line
    assert "`infarct_outside_mca` on 1" in ev._false_acute_lines(fa)[0]


def test_the_report_says_where_the_located_findings_lie_against_the_truth(tmp_path):
    """nifti/findings.nii.gz (1 haemorrhage, 2 old infarct) against the phantom's truth masks: the
    share inside the truth on the studies that have the finding, and the false flags by name."""
    empty = np.zeros(SHAPE, np.uint8)
    blood = box(2, 3, 2, 5, 2, 5)  # 9 voxels
    make_case(tmp_path, "h_haem", "haemorrhage", empty, 10, None, [], 0.0)
    write_mask(tmp_path / "cases" / "h_haem" / "truth" / "haemorrhage.nii.gz", blood)
    make_run(tmp_path, "h_haem", empty, 10, None, [], flags=["haemorrhage_suspected"])
    located = blood.copy()
    located[2, 2, 2] = 0
    located[4, 8, 8] = 1  # 8 of its 9 voxels on the haematoma
    write_mask(tmp_path / "runs" / "h_haem" / "nifti" / "findings.nii.gz", located)
    make_case(tmp_path, "n_normal", "normal", empty, 10, None, [], 0.0)  # a false old-infarct flag, located
    make_run(tmp_path, "n_normal", empty, 10, None, [], flags=["old_infarct_suspected"])
    write_mask(tmp_path / "runs" / "n_normal" / "nifti" / "findings.nii.gz", 2 * box(1, 2, 1, 3, 1, 3))
    make_case(tmp_path, "o_old", "old_infarct", empty, 10, None, [], 0.0)  # a run before 0.4.0: no findings.nii.gz
    make_run(tmp_path, "o_old", empty, 10, None, [], flags=["old_infarct_suspected"])
    assert ev.main(["--cases", str(tmp_path / "cases"), "--runs", str(tmp_path / "runs"),
                    "--report", str(tmp_path / "rep" / "r")]) == 0
    rep = json.loads((tmp_path / "rep" / "r.json").read_text())["located_findings"]
    haem, old = rep["haemorrhage_suspected"], rep["old_infarct_suspected"]
    assert (haem["flagged"], haem["located"], haem["on_the_finding"], haem["elsewhere"]) == (1, 1, 1, [])
    assert haem["inside_truth"]["median"] == pytest.approx(8 / 9, abs=1e-3)
    assert (old["flagged"], old["located"], old["on_the_finding"], old["elsewhere"]) == (2, 1, 0, ["n_normal"])
    md = (tmp_path / "rep" / "r.md").read_text()
    assert "`haemorrhage_suspected`: 1 flagged, 1 located on the slices" in md and "without it: n_normal." in md


def test_bad_cases_folder_is_one_line_error(tmp_path, capsys):
    assert ev.main(["--cases", str(tmp_path / "nope"), "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error[2]:")


FAKE_APP = """
import sys, time
block = bytearray(200 * 1024 * 1024)  # touch 200 MB so the peak RSS is known to exceed it
for i in range(0, len(block), 4096):
    block[i] = 1
print("working")
print("error[5]: the series has missing slices", file=sys.stderr)
sys.exit(5)
"""


def test_run_app_reports_exit_code_error_line_and_peak_memory(tmp_path):
    app = tmp_path / "fake_app.py"
    app.write_text(FAKE_APP)
    out = tmp_path / "out"
    (out / "nifti").mkdir(parents=True)
    (out / "aspects.json").write_text("{}")  # stale result from an earlier run
    rr = ev.run_app(tmp_path, out, tmp_path, tmp_path / "console.txt", app=app)
    assert rr.exit_code == 5 and rr.last_line == "error[5]: the series has missing slices"
    assert rr.peak_rss_mb > 200
    assert not (out / "aspects.json").exists()


def test_in_process_runner_reports_the_exit_code_and_error_line(tmp_path):
    """--run without --subprocess: the app's stages in this process, a bad study counted as the app counts it."""
    (tmp_path / "dicom").mkdir()
    rr = ev.InProcessRunner()(tmp_path / "dicom", tmp_path / "out", tmp_path / "no_models", tmp_path / "console.txt")
    assert rr.exit_code == 3 and rr.last_line.startswith("error[3]: ") and "is empty" in rr.last_line
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] == 3  # the app's folder rules
    assert (tmp_path / "console.txt").read_text().strip() == rr.last_line


def test_bench_table_from_measurements():
    from aspects_research.tools import bench

    assert bench.stats([3.0, 1.0, 2.0, None]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert bench.region_stage({"load": 1.0, "regions": 4.0}) == "regions"
    result = {"thickness": {"5": {"n_ok": 1, "runs": [{"case": "c", "exit_code": 0}],
                                  "stages": {"regions": bench.stats([4.0])}, "wall_s": bench.stats([9.5]),
                                  "peak_rss_mb": bench.stats([1234.0])}},
              "region_paths": {"case": "c", "model": None, "atlas": {"region_s": 4.0, "total_wall_s": 9.5, "peak_rss_mb": 1234.0}}}
    text = "\n".join(bench.table(result))
    assert "| regions | 4.0 | 4.0 | 4.0 |" in text and "| **peak RSS (MB)** | 1234 |" in text
    assert "| model | no aspects_regions model" in text and "| atlas | 4.0 | 9.5 | 1234 |" in text
    assert "wall time / reference" not in text  # no reference measured: no ratio row
    result["reference_s"] = 0.5
    assert "| **wall time / reference workload** | 19.0 | 19.0 | 19.0 |" in "\n".join(bench.table(result))
    assert "| **studies per hour (3600 / wall time)** | 379 |" in text  # in-process: one warm process
    result["mode"] = "subprocess"
    assert "studies per hour" not in "\n".join(bench.table(result))  # a process per study: no throughput claim


def test_bench_compare_puts_benches_side_by_side(tmp_path):
    from aspects_research.tools import bench

    def saved(name: str, mode: str, wall: float, ref: float) -> str:
        doc = {"mode": mode, "reference_s": ref, "thickness": {"5": {
            "n_ok": 2, "runs": [{}, {}], "wall_s": bench.stats([wall, wall]), "peak_rss_mb": bench.stats([1500.0])}}}
        (tmp_path / name).write_text(json.dumps(doc))
        return f"{name}={tmp_path / name}"

    rows = bench.compare([saved("before", "subprocess", 40.0, 0.5), saved("after", "in-process", 20.0, 0.4)])
    assert rows[2] == "| before | subprocess | 5 | 2/2 | 40.0 | 80.00 |  | 1500 |"
    assert rows[3] == "| after | in-process | 5 | 2/2 | 20.0 | 50.00 | 180 | 1500 |"
    assert bench.main(["--compare", f"x={tmp_path / 'missing.json'}"]) == 2


def test_bench_reference_workload_is_a_positive_repeatable_time():
    from aspects_research.tools import bench

    t = bench.reference_workload(repeats=1)
    assert 0.0 < t < 60.0


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("ASPECTS_E2E") != "1", reason="end to end through the app (minutes): set ASPECTS_E2E=1")
def test_end_to_end_two_phantoms(tmp_path):
    """Two real phantoms (acute 10 HU, normal) made by make_phantoms and run through the app."""
    root = Path(ev.__file__).resolve().parents[2]
    cases = tmp_path / "cases"
    for seed, kind, extra in ((1000, "acute", ["--hu-drop", "10", "--pattern", "whole_mca"]), (1001, "normal", [])):
        subprocess.run([sys.executable, "-m", "aspects_research.tools.make_phantoms", "--out", str(cases), "--count", "1",
                        "--seed", str(seed), "--kind", kind, "--thickness", "5", *extra], check=True, cwd=root)
    assert ev.main(["--cases", str(cases), "--runs", str(tmp_path / "runs"), "--run", "--report", str(tmp_path / "r")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n_ok"] == 2, rep["failed"]
    assert rep["detection"]["tp"] == 1 and rep["infarct"]["acute"]["dice"]["median"] > 0.3
    assert rep["aspects"]["acute"]["within_2"] == 1.0
    assert all(c["passed"] for c in rep["controls"])
