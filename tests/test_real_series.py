"""Real scanners' series through the app's stages (in-process, :mod:`aspects.pipeline`): the real GE head CT (18.5 deg gantry tilt, 4 mm and 7 mm
slices with a 1.08 mm step), synthetic tilts both ways (one also with two slice steps), and a study
whose top is not scanned. One run per study, shared by the tests of this module.

What must hold: the series is processed (not refused); every output maps back onto the ORIGINAL
instances (SEG frames carry each source instance's own plane position and orientation, key images
are source slices); the DICOM passes dciodvfy; regions the scan does not cover are not assessable
and never reported as a normal score.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from aspects.dicom_geometry import sort_slices
from aspects.result_json import validate
from tests.support import INVESALIUS, REAL_DATA
from tests.support.app_runs import run_pipeline
from tests.test_app import tree_digest
from aspects_research.tools.robustness import sorted_files

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

GE = REAL_DATA / "ge_tilted_head_dicom" / "dicom"
OUTPUTS = ("dicom/seg.dcm", "dicom/sr.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm", "png/key_bg.png",
           "png/key_sg.png", "nifti/infarct.nii.gz", "nifti/regions.nii.gz")


def _dciodvfy_errors(path: Path) -> List[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _sources(folder: Path) -> List[pydicom.Dataset]:
    """The series as the app sees it: sorted, each SOP instance once (copies dropped)."""
    by_uid = {}
    for p in sorted_files(folder):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        by_uid.setdefault(str(ds.SOPInstanceUID), ds)
    return sort_slices(list(by_uid.values()))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def check_seg_on_source_planes(out: Path, sources: Sequence[pydicom.Dataset]) -> int:
    """Every SEG frame sits on its source instance's plane and holds the mask of that instance's
    index (the NIfTI copy: infarct, regions, a located finding); returns the number of frames checked."""
    seg = pydicom.dcmread(out / "dicom" / "seg.dcm")
    index = {str(ds.SOPInstanceUID): k for k, ds in enumerate(sources)}
    shared = seg.SharedFunctionalGroupsSequence[0]
    frames = seg.pixel_array.reshape((-1, int(seg.Rows), int(seg.Columns)))
    infarct = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "infarct.nii.gz"))) > 0
    regions = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "regions.nii.gz")))
    findings = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "findings.nii.gz")))
    finding_value = {"Suspected haemorrhage": 1, "Suspected old infarct": 2}  # nifti/findings.nii.gz
    finding_of = {int(d.SegmentNumber): finding_value[d.SegmentLabel] for d in seg.SegmentSequence if int(d.SegmentNumber) > 21}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        src = sources[index[uid]]
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in src.ImagePositionPatient], atol=1e-4)
        orientation = (item.get("PlaneOrientationSequence") or shared.PlaneOrientationSequence)[0].ImageOrientationPatient
        np.testing.assert_allclose([float(v) for v in orientation], [float(v) for v in src.ImageOrientationPatient], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                                   [float(v) for v in src.PixelSpacing], atol=1e-6)
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = index[uid]
        if segment in finding_of:
            expected = findings[k] == finding_of[segment]
        else:
            expected = infarct[k] if segment == 1 else regions[k] == segment - 1
        assert np.array_equal(frames[f] > 0, expected), f"frame {f} (segment {segment}, slice {k})"
    return len(seg.PerFrameFunctionalGroupsSequence)


def _check_result(run: Dict) -> dict:
    proc, out = run["proc"], run["out"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for rel in OUTPUTS:
        assert (out / rel).is_file(), rel
    result = json.loads((out / "aspects.json").read_text())
    validate(result)
    assert not list(out.glob(".aspects-partial-*"))
    return result


# ----------------------------------------------------------------------------- the real GE series
@pytest.fixture(scope="module")
def ge(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("ge") / "out"
    (out / "dicom").mkdir(parents=True)  # an earlier result in the output folder: replaced whole
    (out / "dicom" / "extra_from_last_run.dcm").write_bytes(b"old")
    (out / "aspects.json").write_text(json.dumps({"outputs": {"key_images": ["dicom/extra_from_last_run.dcm"]}}))
    before = tree_digest(GE)
    proc = run_pipeline(pipeline, GE, out)
    return {"proc": proc, "out": out, "before": before, "sources": _sources(GE)}


def _no_volume_loss_veto(result: dict) -> None:
    """Every region reports its volume-loss share (docs/results_v2.md, "Volume-loss veto") and, with
    the shipped calibration (reported, not applied), no call is withdrawn."""
    shares = [r["evidence"]["volume_loss"] for per in result["regions"].values() for r in per.values()]
    assert None not in shares and all(-1.0 <= v <= 1.0 for v in shares), shares
    assert not [r for per in result["regions"].values() for r in per.values() if r.get("withdrawn_calls")]


@pytest.mark.external
@pytest.mark.skipif(not GE.is_dir(), reason="../shared/data/real/ge_tilted_head_dicom not present")
class TestRealGantryTiltedSeries:
    def test_processed_with_every_output_and_the_earlier_result_replaced(self, ge):
        result = _check_result(ge)
        assert not (ge["out"] / "dicom" / "extra_from_last_run.dcm").exists()
        assert tree_digest(GE) == ge["before"]
        assert result["series_instance_uid"] == str(ge["sources"][0].SeriesInstanceUID)
        log = (ge["out"] / "app.log").read_text()
        assert "gantry tilt 18.5 deg removed" in log and "slice steps 1.08-7.00 mm" in log
        # the whole head is scanned: every region assessable, both sides scored
        assert all(r.get("assessable", True) for s in result["regions"].values() for r in s.values())
        assert None not in result["aspects"].values()
        _no_volume_loss_veto(result)
        # a real skull, tilted and on 4 / 7 mm slices, covers the brain (aspects.skull_cover)
        assert result["qc"]["skull_uncovered_cm2"] == {"right": 0.0, "left": 0.0}

    def test_without_its_left_skull_flap_it_is_low_confidence(self, pipeline, tmp_path):
        """The real series with its left bone flap made scalp (a hemicraniectomy): 0.7.0 moved its
        infarct to the right (right 4, left 10) without a flag; now the skull defect says why not
        to trust it (docs/results_v2.md, "A head without its skull flap")."""
        from aspects_research.tools.robustness import remove_skull_flap

        inp = tmp_path / "input"
        shutil.copytree(GE, inp, copy_function=shutil.copyfile)  # writable copies of the shared files
        remove_skull_flap(inp, "left")
        result = _check_result({"proc": run_pipeline(pipeline, inp, tmp_path / "out"), "out": tmp_path / "out"})
        assert "low_confidence" in result["flags"]
        assert result["qc"]["skull_uncovered_cm2"]["left"] >= 60.0 > result["qc"]["skull_uncovered_cm2"]["right"]
        assert any(r.startswith("skull defect") and "left convexity" in r for r in result["qc"]["reasons"])

    def test_with_an_acute_subdural_haematoma_it_is_flagged_where_the_blood_is(self, pipeline, tmp_path):
        """The real series (tilted, 4 / 7 mm) with a 10 mm acute subdural haematoma over its left
        convexity: 0.8.0 found 6 ml of its blood and scored the right side 6 (the other side's
        cortex darker than the blood); now the haemorrhage flag carries the collection (docs/results_v2.md, "Blood between the
        brain and the skull"), and its key image is a source slice."""
        from aspects_research.tools.robustness import add_subdural

        inp = tmp_path / "input"
        shutil.copytree(GE, inp, copy_function=shutil.copyfile)
        add_subdural(inp, "left", thickness_mm=10.0, blood_hu=65.0)
        result = _check_result({"proc": run_pipeline(pipeline, inp, tmp_path / "out"), "out": tmp_path / "out"})
        blood = result["flag_details"]["haemorrhage_suspected"]
        assert blood["extra_axial_ml"] >= 10.0, blood
        assert result["aspects"]["right"] == 10, result["aspects"]
        sc = pydicom.dcmread(tmp_path / "out" / "dicom" / "key_haemorrhage.dcm", stop_before_pixels=True)
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID

    def test_seg_frames_sit_on_the_tilted_source_planes(self, ge):
        assert check_seg_on_source_planes(ge["out"], ge["sources"]) > 20

    def test_key_images_are_source_slices(self, ge):
        uids = {str(ds.SOPInstanceUID) for ds in ge["sources"]}
        for level in ("bg", "sg", "outside_mca"):
            sc = pydicom.dcmread(ge["out"] / "dicom" / f"key_{level}.dcm", stop_before_pixels=True)
            assert str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID) in uids

    def test_the_infarct_outside_the_mca_territory_has_its_own_key_image(self, ge):
        """This head's left posterior (PCA territory) lesion, flagged `infarct_outside_mca`: its own
        key image on the slice where it is largest, ringed in the infarct's red, and a ring where it
        crosses the BG key slice; it stays in SEG segment 1 and gets no segment of its own."""
        from PIL import Image

        from aspects.labels import INFARCT_COLOUR

        result = json.loads((ge["out"] / "aspects.json").read_text())
        assert result["flag_details"]["infarct_outside_mca"]["volume_ml"] > 20
        assert "seg_segment" not in result["flag_details"]["infarct_outside_mca"]
        assert "dicom/key_outside_mca.dcm" in result["outputs"]["key_images"]
        seg = pydicom.dcmread(ge["out"] / "dicom" / "seg.dcm", stop_before_pixels=True)
        assert len(seg.SegmentSequence) == 21
        ring = lambda name: int((np.asarray(Image.open(ge["out"] / "png" / name).convert("RGB"))  # noqa: E731
                                 == INFARCT_COLOUR).all(axis=2).sum())
        assert ring("key_outside_mca.png") > 100 and ring("key_bg.png") > 100  # the fill is blended: pure red is the ring

    @pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing (apt-get install dicom3tools)")
    @pytest.mark.parametrize("rel", ["dicom/seg.dcm", "dicom/sr.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm",
                                     "dicom/key_outside_mca.dcm", "dicom/kos.dcm"])
    def test_dciodvfy_accepts_the_outputs(self, ge, rel):
        assert ge["proc"].returncode == 0
        assert not _dciodvfy_errors(ge["out"] / rel)


# ----------------------------------------------------------------------------- synthetic tilts
@pytest.fixture(scope="module")
def tilted(phantom_case, pipeline, tmp_path_factory):
    """+15 deg (with a 500-character StudyDescription and byte-identical copies of three files)
    and -20 deg with two slice steps (2.5 mm, then 5 mm above mid-head)."""
    runs = {}
    work = tmp_path_factory.mktemp("tilted")
    plus = phantom_case(44, kind="acute", thickness=5.0, tilt_deg=15.0, hu_drop=10.0, side="left",
                     pattern="whole_mca")
    inp = work / "plus"
    shutil.copytree(plus / "dicom", inp)
    for p in sorted_files(inp):
        ds = pydicom.dcmread(p)
        ds.StudyDescription = "CT HEAD WITHOUT CONTRAST " * 20
        ds.save_as(p)
    (inp / "copies").mkdir()
    for p in sorted_files(inp)[5:8]:
        shutil.copy2(p, inp / "copies" / p.name)
    runs["plus"] = {"proc": run_pipeline(pipeline, inp, work / "plus_out"), "out": work / "plus_out", "case": plus, "input": inp,
                    "kept": None}
    minus = phantom_case(45, kind="acute", thickness=2.5, tilt_deg=-20.0, hu_drop=10.0, side="right",
                      pattern="whole_mca")
    inp = work / "minus"
    shutil.copytree(minus / "dicom", inp)
    files = sorted_files(inp)
    kept = [k for k in range(len(files)) if not (k > len(files) // 2 and k % 2)]
    for k, p in enumerate(files):
        if k not in kept:
            p.unlink()
    runs["minus"] = {"proc": run_pipeline(pipeline, inp, work / "minus_out"), "out": work / "minus_out", "case": minus, "input": inp,
                     "kept": kept}
    return runs


@pytest.mark.parametrize("which", ["plus", "minus"])
def test_tilted_series_are_scored_like_their_truth(tilted, which):
    run = tilted[which]
    result = _check_result(run)
    truth = json.loads((run["case"] / "truth.json").read_text())
    side = truth["affected_side"]
    assert result["affected_side"] == side
    assert abs(result["aspects"][side] - truth["aspects"][side]) <= 2
    other = "left" if side == "right" else "right"
    assert result["aspects"][other] >= 9
    # masks index-aligned with the ORIGINAL tilted instances: compare with the truth slice by slice
    kept = run["kept"]
    truth_inf = sitk.GetArrayFromImage(sitk.ReadImage(str(run["case"] / "truth" / "infarct.nii.gz"))) > 0
    truth_reg = sitk.GetArrayFromImage(sitk.ReadImage(str(run["case"] / "truth" / "regions.nii.gz")))
    if kept is not None:
        truth_inf, truth_reg = truth_inf[kept], truth_reg[kept]
    got_inf = sitk.GetArrayFromImage(sitk.ReadImage(str(run["out"] / "nifti" / "infarct.nii.gz"))) > 0
    got_reg = sitk.GetArrayFromImage(sitk.ReadImage(str(run["out"] / "nifti" / "regions.nii.gz")))
    assert got_inf.shape == truth_inf.shape
    assert _dice(got_inf, truth_inf) > 0.5
    region_dice = [_dice(got_reg == v, truth_reg == v) for v in range(1, 21) if (truth_reg == v).any()]
    assert np.mean(region_dice) > 0.6, np.round(region_dice, 2)


@pytest.mark.parametrize("which", ["plus", "minus"])
def test_tilted_seg_frames_sit_on_the_source_planes(tilted, which):
    assert tilted[which]["proc"].returncode == 0
    assert check_seg_on_source_planes(tilted[which]["out"], _sources(tilted[which]["input"])) > 0


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing (apt-get install dicom3tools)")
def test_long_source_values_are_cut_to_their_vr_and_copies_are_dropped(tilted):
    run = tilted["plus"]
    assert run["proc"].returncode == 0
    for rel in ("dicom/seg.dcm", "dicom/sr.dcm", "dicom/key_bg.dcm"):
        assert not _dciodvfy_errors(run["out"] / rel), rel
        assert len(pydicom.dcmread(run["out"] / rel, stop_before_pixels=True).StudyDescription) <= 64
    log = (run["out"] / "app.log").read_text()
    assert log.count("byte-identical copy of") == 3


# ----------------------------------------------------------------------------- coverage
@pytest.fixture(scope="module")
def top_cut(phantom_case, pipeline, tmp_path_factory):
    """An acute study whose upper 40 % (the supraganglionic level and above) was not scanned."""
    case = phantom_case(46, kind="acute", thickness=5.0, hu_drop=10.0, side="left", pattern="whole_mca")
    inp = tmp_path_factory.mktemp("topcut") / "input"
    files = sorted_files(case / "dicom")
    inp.mkdir()
    for p in files[: int(0.6 * len(files))]:
        shutil.copy(p, inp / p.name)
    return {"proc": run_pipeline(pipeline, inp, inp.parent / "out"), "out": inp.parent / "out"}


def test_top_cut_study_is_never_a_normal_score(top_cut):
    result = _check_result(top_cut)
    missing = result["flag_details"]["incomplete_coverage"]["regions"]
    assert "incomplete_coverage" in result["flags"]
    assert {"left M4", "left M5", "left M6", "right M4", "right M5", "right M6"} <= set(missing)
    assert result["aspects"] == {"left": None, "right": None} and result["score"] is None
    for name in missing:
        side, code = name.split(" ")
        assert result["regions"][side][code]["assessable"] is False and result["regions"][side][code]["involved"] is None
    # what was covered is still measured: the BG-level regions of the infarcted side
    assert any(r["assessable"] and r["infarct_ml"] > 0 for r in result["regions"]["left"].values())


# ----------------------------------------------------------------------------- a second real scan


@pytest.mark.external
@pytest.mark.skipif(not INVESALIUS.is_file(), reason="../shared/data/real/invesalius_head_ct not present")
# Not strict: the call it fails on (right M5 at 14 % of the region) is near the 10 % threshold, and
# another CPU's floating point may move it; an XPASS is reported, not hidden.
@pytest.mark.xfail(strict=False, reason="known limit (docs/results.md, session 32): this head's own right-darker "
                   "MCA asymmetry (~1 HU) with 10 HU more noise passes the model, the bilateral comparison and the mask "
                   "check (right M5 called, R9); the balanced phantoms of the same head stay 10 / 10 with that noise")
def test_a_real_normal_head_with_more_noise_keeps_aspects_10(pipeline, tmp_path):
    """The InVesalius head with 10 HU of Gaussian noise added to its 1.5 mm slices (aligned-grid
    noise 1.6 -> 2.0 HU, a thin sharp-kernel or low-dose series): a head without acute infarct
    (its one lesion old, flagged and not scored) must keep 10 / 10."""
    from aspects_research.tools.qc_calibration import perturbed
    from aspects_research.tools.robustness import nifti_as_dicom

    noisy = tmp_path / "noisy.nii.gz"
    head = perturbed(sitk.ReadImage(str(INVESALIUS), sitk.sitkFloat32), noise_sd=10.0)
    sitk.WriteImage(sitk.Cast(sitk.Round(head), sitk.sitkInt16), str(noisy))
    inp = nifti_as_dicom(noisy, tmp_path / "input", "InVesalius example head CT, 10 HU more noise (GPL-2)")
    run_pipeline(pipeline, inp, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "aspects.json").read_text())
    assert result["aspects"] == {"left": 10, "right": 10}, (result["aspects"], result["infarct_volume_ml"])


@pytest.mark.external
@pytest.mark.skipif(not INVESALIUS.is_file(), reason="../shared/data/real/invesalius_head_ct not present")
def test_second_real_head_ct_wrapped_as_dicom(pipeline, tmp_path):
    """Another scanner's anatomy (256 matrix, 1.5 mm): processed end to end, every region found on
    the source slices, the brain volume in the adult range."""
    from aspects_research.tools.robustness import nifti_as_dicom

    inp = nifti_as_dicom(INVESALIUS, tmp_path / "input", "InVesalius example head CT (GPL-2)")
    run = {"proc": run_pipeline(pipeline, inp, tmp_path / "out"), "out": tmp_path / "out"}
    result = _check_result(run)
    assert None not in result["aspects"].values()  # the whole head is scanned
    regions = sitk.GetArrayFromImage(sitk.ReadImage(str(run["out"] / "nifti" / "regions.nii.gz")))
    assert set(np.unique(regions)) >= set(range(1, 21))
    assert 900 < result["qc"]["brain_volume_ml"] < 1800, result["qc"]
    assert result["qc"]["skull_uncovered_cm2"] == {"right": 0.0, "left": 0.0}
    _no_volume_loss_veto(result)
    # flag volumes are in the patient's ml, as the infarct volume is: the acute infarct outside the
    # MCA territory is part of it (this head is 16 % smaller than the template: counted on the
    # aligned grid, 1.3 ml outside the MCA stood beside 1.1 ml of infarct in all)
    outside = (result["flag_details"].get("infarct_outside_mca") or {}).get("volume_ml")
    assert outside is None or outside <= 1.1 * result["infarct_volume_ml"], (outside, result["infarct_volume_ml"])
    # This head has a chronic lesion, CSF-dense in its core (the data README's "unannotated frontal
    # hypodensity"): flagged as an old infarct, not scored, and shown where it is: its own SEG
    # segment and key image, frontal on the side the README assumes is the right.
    assert result["aspects"] == {"left": 10, "right": 10}
    assert 4.0 < result["flag_details"]["old_infarct_suspected"]["volume_ml"] < 20.0, result["flag_details"]
    assert result["flag_details"]["old_infarct_suspected"]["seg_segment"] == 22
    assert "dicom/key_old_infarct.dcm" in result["outputs"]["key_images"]
    findings = sitk.ReadImage(str(run["out"] / "nifti" / "findings.nii.gz"))
    old = np.argwhere(sitk.GetArrayFromImage(findings) == 2)
    centre = np.asarray(findings.TransformContinuousIndexToPhysicalPoint(old.mean(axis=0)[::-1].tolist()))
    brain = np.argwhere(regions > 0)
    middle = np.asarray(findings.TransformContinuousIndexToPhysicalPoint(brain.mean(axis=0)[::-1].tolist()))
    assert centre[1] < middle[1] - 30 and centre[0] < middle[0], (centre, middle)  # LPS: anterior, patient right
    assert check_seg_on_source_planes(run["out"], _sources(inp)) > 0
    # This head is pitched ~15 degrees against the atlas (M4 peaks 21 mm above M6): the SG key
    # image still shows M4, M5 and M6 (both sides' colours) and no BG region's outline.
    from PIL import Image

    from aspects.labels import REGION_COLOURS

    sg = np.asarray(Image.open(run["out"] / "png" / "key_sg.png").convert("RGB"))
    for code in ("M4", "M5", "M6"):
        assert (sg == REGION_COLOURS[code]).all(axis=2).sum() > 40, code
    for code in ("C", "IC", "M1", "M3"):
        assert (sg == REGION_COLOURS[code]).all(axis=2).sum() == 0, code


@pytest.mark.external
@pytest.mark.skipif(not INVESALIUS.is_file(), reason="../shared/data/real/invesalius_head_ct not present")
def test_a_real_head_turned_30_degrees_registers_as_well_as_it_lies(pipeline, tmp_path):
    """The InVesalius head turned 30 degrees about its long axis (a patient lying turned in the
    scanner: aspects.head_pose). Started from the centres of mass the registration lost it (NCC
    0.48, `low_confidence`, R8); started turned it registers as the head as given does (NCC 0.57)
    and keeps 10 / 10."""
    from aspects_research.tools.perturbed_heads import nifti_version

    inp = nifti_version(INVESALIUS, {"rotate": ["yaw", 30.0]}, tmp_path)
    run_pipeline(pipeline, inp, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "aspects.json").read_text())
    assert "low_confidence" not in result["flags"], result["qc"]
    assert result["qc"]["ncc"] >= 0.55, result["qc"]
    assert result["aspects"] == {"left": 10, "right": 10}, (result["aspects"], result["infarct_volume_ml"])
    assert "registration starts turned" in (tmp_path / "out" / "app.log").read_text()
