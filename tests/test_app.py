"""The application end to end on synthetic studies: a 5 mm study run as a user runs it
(`python app.py -i -o -m`), a thin 1 mm study through the same stages in-process.

Each run takes up to about a minute on 2 cores (registration); the runs are shared per module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from aspects.dicom_sr import read_aspects_from_sr
from aspects.labels import REGION_CODES, SIDES, label_value
from aspects.result_json import validate
from tests.support.app_runs import run_app, run_pipeline
from tests.support.dcmqi_readback import mask_on, needs_dcmqi, read_seg, read_sr, sr_texts, sr_values

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing (apt-get install dicom3tools)")


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _run(case: Path, work: Path, extra_files: bool = False, pipeline=None):
    """Copy the case's DICOM to a fresh input folder (plus junk files if asked) and run the app
    (in-process when a ``pipeline`` is given)."""
    inp = work / "input"
    shutil.copytree(case / "dicom", inp)
    if extra_files:
        (inp / "README.txt").write_text("not DICOM")
        (inp / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x07" * 300)
    before = tree_digest(inp)
    proc = run_app(inp, work / "out") if pipeline is None else run_pipeline(pipeline, inp, work / "out")
    return {"proc": proc, "out": work / "out", "input": inp, "before": before, "case": case,
            "truth": json.loads((case / "truth.json").read_text())}


@pytest.fixture(scope="module")
def acute5(phantom_case, tmp_path_factory):
    case = phantom_case(21, kind="acute", thickness=5.0, hu_drop=10.0, side="left",
                     pattern="whole_mca", matrix=512)
    return _run(case, tmp_path_factory.mktemp("app5"), extra_files=True)


@pytest.fixture(scope="module")
def acute1(phantom_case, pipeline, tmp_path_factory):
    case = phantom_case(22, kind="acute", thickness=1.0, hu_drop=8.0, side="right", matrix=512)
    return _run(case, tmp_path_factory.mktemp("app1"), pipeline=pipeline)


def test_5mm_study_runs_and_writes_every_output(acute5):
    proc, out = acute5["proc"], acute5["out"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "aspects.json").read_text())
    validate(result)
    for rel in ("dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm", "png/key_bg.png",
                "png/key_sg.png", "nifti/infarct.nii.gz", "nifti/regions.nii.gz", "app.log"):
        assert (out / rel).is_file(), rel
    assert {k: result["methods"][k] for k in ("regions", "infarct")} in (
        {"regions": "atlas", "infarct": "asymmetry"}, {"regions": "model", "infarct": "model"},
        {"regions": "model", "infarct": "asymmetry"}, {"regions": "atlas", "infarct": "model"})
    assert result["device"] == "cpu"  # CI has no GPU; the CUDA branch is forced in tests/test_device.py
    assert {"preprocess", "regions", "infarct", "findings", "scoring"} <= set(result["timings_s"])
    assert result["not_for_diagnostic_use"] is True


def test_the_study_is_read_and_registered_before_the_heavy_imports_and_only_once(acute5):
    """``python app.py`` scans, selects, loads and preprocesses the study in a head start
    (aspects/head_start.py) while torch and the SDK load; the operators take its results. Each
    stage's line is in app.log once, the registration began before the model's device was
    resolved (a torch import), and the stages' timings are the run's."""
    log = (acute5["out"] / "app.log").read_text()
    for line in ("DICOM header(s) from", "selected series", "preprocessing: skull stripping", "preprocessing done in",
                 "image findings (blood, old infarct, calcification) in"):
        assert log.count(line) == 1, line
    assert log.index("preprocessing: skull stripping") < log.index("inference device:")
    assert "NumPy transparent huge pages: not advised ($NUMPY_MADVISE_HUGEPAGE=0)" in log  # aspects/memory.py
    timings = json.loads((acute5["out"] / "aspects.json").read_text())["timings_s"]
    assert {"scan", "select", "load", "hu_volume", "preprocess", "preprocess_registration"} <= set(timings)


def test_corrupt_and_foreign_files_are_skipped_and_the_input_is_untouched(acute5):
    assert acute5["proc"].returncode == 0
    assert tree_digest(acute5["input"]) == acute5["before"]
    log = (acute5["out"] / "app.log").read_text()
    assert "broken.dcm" in log and "README.txt" in log


def test_result_matches_truth_for_a_clear_whole_mca_infarct(acute5):
    result = json.loads((acute5["out"] / "aspects.json").read_text())
    truth = acute5["truth"]
    assert result["affected_side"] == truth["affected_side"] == "left"
    assert abs(result["aspects"]["left"] - truth["aspects"]["left"]) <= 2
    assert result["aspects"]["right"] >= 9
    assert result["infarct_volume_ml"] == pytest.approx(truth["infarct_volume_ml"], rel=0.5)


def test_seg_references_the_source_instances_and_matches_the_nifti(acute5):
    out = acute5["out"]
    seg = hd.seg.segread(str(out / "dicom" / "seg.dcm"))
    assert len(seg.SegmentSequence) == 21
    source_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                   for p in acute5["input"].glob("*.dcm") if p.name != "broken.dcm"}
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced and referenced <= source_uids
    assert seg.StudyInstanceUID == json.loads((out / "aspects.json").read_text())["study_instance_uid"]
    infarct_nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "infarct.nii.gz")))
    frames = seg.get_volume(segment_numbers=[1], combine_segments=True, skip_overlap_checks=True)
    assert int(np.count_nonzero(frames.array)) == int(np.count_nonzero(infarct_nifti))


def test_the_outputs_name_the_infarct_model_and_how_it_ran(acute5):
    """aspects.json ``methods``, the SEG's algorithm parameters and the SR's note say which model
    version made the mask, what its second input channel was and how its mirror pass was used:
    a result can be traced to the model file and the settings behind it."""
    from aspects.segmentation import INFARCT_MIRROR_TTA, declared_second_channel, declared_version

    shipped = Path(__file__).resolve().parents[1] / "models" / "infarct_seg" / "infarct_seg.ts"
    out = acute5["out"]
    methods = json.loads((out / "aspects.json").read_text())["methods"]
    run = {"version": declared_version(shipped), "second_channel": declared_second_channel(shipped),
           "mirror_tta": INFARCT_MIRROR_TTA.value}
    assert run["version"] and methods["infarct"] == "model" and methods["infarct_model"] == run
    seg = pydicom.dcmread(out / "dicom" / "seg.dcm", stop_before_pixels=True)
    params = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert params == ",".join(f"{'model_version' if k == 'version' else k}={v}" for k, v in run.items())
    notes = list(sr_texts(pydicom.dcmread(out / "dicom" / "sr.dcm")))
    assert any(f"infarct by model (version {run['version']}, mirror pass {run['mirror_tta']})" in n for n in notes)


def test_sr_holds_the_same_aspects_as_the_json(acute5):
    out = acute5["out"]
    result = json.loads((out / "aspects.json").read_text())
    assert read_aspects_from_sr(out / "dicom" / "sr.dcm") == result["aspects"]


@needs_dcmqi
def test_dcmqi_reads_the_outputs_as_aspects_json_and_the_nifti_say(acute5, tmp_path):
    """A third-party reader (dcmqi, as in 3D Slicer) sees the scores, the per-region volumes and masks."""
    out = acute5["out"]
    result = json.loads((out / "aspects.json").read_text())
    assert result["outputs"]["kos"] == "dicom/kos.dcm"
    seen = sr_values(read_sr(out / "dicom" / "sr.dcm", tmp_path))
    assert (seen["score"], seen["aspects"]) == (result["score"], result["aspects"])
    _, images = read_seg(out / "dicom" / "seg.dcm", tmp_path)
    reference = sitk.ReadImage(str(out / "nifti" / "regions.nii.gz"))
    regions_nii = sitk.GetArrayFromImage(reference)
    infarct_nii = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "infarct.nii.gz"))) > 0
    assert np.array_equal(mask_on(images[1], 1, reference), infarct_nii)
    for side in SIDES:
        for code in REGION_CODES:
            label = label_value(side, code)
            assert np.array_equal(mask_on(images[label + 1], label + 1, reference), regions_nii == label), (side, code)
            want, got = result["regions"][side][code], seen["regions"][(side, code)]
            assert got["infarct_ml"] == pytest.approx(want["infarct_ml"], abs=1e-3), (side, code)
            assert got["region_ml"] == pytest.approx(want["region_ml"], abs=1e-3), (side, code)


@pytest.mark.external
@needs_dciodvfy
@pytest.mark.parametrize("rel", ["dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm"])
def test_dciodvfy_accepts_the_outputs(acute5, rel):
    run = subprocess.run(["dciodvfy", str(acute5["out"] / rel)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("position", ["HFP", "FFS"])
def test_a_study_scanned_prone_or_feet_first_gives_the_same_answer(acute5, pipeline, position, tmp_path):
    """The same physical image stored as a prone (HFP) or feet-first (FFS) scanner writes it:
    rows and / or columns the other way round, the orientation vectors and positions with them.
    The answer, the SEG's references and the key image as displayed must not change."""
    from PIL import Image

    from aspects_research.tools.robustness import reposition

    inp = tmp_path / "input"
    shutil.copytree(acute5["case"] / "dicom", inp)
    reposition(inp, position)
    first = pydicom.dcmread(sorted(inp.glob("*.dcm"))[0], stop_before_pixels=True)
    assert first.PatientPosition == position and float(first.ImageOrientationPatient[0]) == -1.0
    run = run_pipeline(pipeline, inp, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    base = json.loads((acute5["out"] / "aspects.json").read_text())
    result = json.loads((tmp_path / "out" / "aspects.json").read_text())
    assert result["aspects"] == base["aspects"] and result["affected_side"] == base["affected_side"]
    def involved(res):
        return {side: {code for code, v in res["regions"][side].items() if v.get("involved")} for side in SIDES}

    assert involved(result) == involved(base)
    assert result["infarct_volume_ml"] == pytest.approx(base["infarct_volume_ml"], rel=0.1)
    seg = hd.seg.segread(str(tmp_path / "out" / "dicom" / "seg.dcm"))
    new_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in inp.glob("*.dcm")}
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced and referenced <= new_uids
    # the key image is shown as a radiologist reads it (patient's right on the viewer's left),
    # whatever the storage order: the same picture as the supine, head-first study's
    key = pydicom.dcmread(tmp_path / "out" / "dicom" / "key_bg.dcm", stop_before_pixels=True)
    assert list(key.PatientOrientation) == ["L", "P"]
    a = np.asarray(Image.open(acute5["out"] / "png" / "key_bg.png"), dtype=float)
    b = np.asarray(Image.open(tmp_path / "out" / "png" / "key_bg.png"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 6.0, np.abs(a - b).mean()
    assert np.abs(a - b[:, ::-1]).mean() > 2 * np.abs(a - b).mean()  # the test tells a mirrored picture


def test_a_head_without_its_skull_flap_is_low_confidence(acute5, pipeline, tmp_path):
    """After a hemicraniectomy the skull strip takes the scalp that lies on the brain for brain:
    the study is called low_confidence, the reason names the side (aspects.skull_cover)."""
    from aspects_research.tools.robustness import remove_skull_flap

    inp = tmp_path / "input"
    shutil.copytree(acute5["case"] / "dicom", inp)
    remove_skull_flap(inp, "right")
    run = run_pipeline(pipeline, inp, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out" / "aspects.json").read_text())
    assert "low_confidence" in result["flags"]
    assert [r for r in result["qc"]["reasons"] if r.startswith("skull defect") and "right convexity" in r], result["qc"]
    assert result["qc"]["skull_uncovered_cm2"]["left"] < 10.0
    # the radiologist reads why in the SR as on the key images
    assert b"Low confidence: skull defect" in (tmp_path / "out" / "dicom" / "sr.dcm").read_bytes()
    # the intact study: its skull covers both sides
    base = json.loads((acute5["out"] / "aspects.json").read_text())["qc"]
    assert max(base["skull_uncovered_cm2"].values()) < 10.0 and not any(r.startswith("skull") for r in base["reasons"])


def test_an_acute_subdural_haematoma_is_flagged_and_costs_the_other_side_no_point(phantom_case, pipeline, tmp_path):
    """A 10 mm crescent of acute blood over the left convexity of a normal head (the brain pressed
    inwards beneath it): 0.8.0 missed it, and read the right hemisphere's cortex, darker than the
    blood, as infarct. Now the haemorrhage flag has it (its extra-axial part in flag_details, the
    SR and the key images' banner), the SEG's haemorrhage segment shows it on the left, and no
    ASPECTS point is lost (aspects.extra_axial)."""
    from aspects_research.tools.robustness import add_subdural

    inp = tmp_path / "input"
    shutil.copytree(phantom_case(31, kind="normal", thickness=5.0) / "dicom", inp)
    add_subdural(inp, "left", thickness_mm=10.0, blood_hu=65.0)
    run = run_pipeline(pipeline, inp, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out"
    result = json.loads((out / "aspects.json").read_text())
    validate(result)
    assert "haemorrhage_suspected" in result["flags"], result["flags"]
    blood = result["flag_details"]["haemorrhage_suspected"]
    assert blood["extra_axial_ml"] >= 2.0 and blood["volume_ml"] >= blood["extra_axial_ml"], blood
    assert result["aspects"] == {"right": 10, "left": 10}, (result["aspects"], result["infarct_volume_ml"])
    assert b"ml of it extra-axial" in (out / "dicom" / "sr.dcm").read_bytes()
    # where the SEG shows it: the patient's left (x > 0 in LPS) of the source slices
    seg = hd.seg.segread(str(out / "dicom" / "seg.dcm"))
    number = blood["seg_segment"]
    assert seg.SegmentSequence[number - 1].SegmentLabel == "Suspected haemorrhage"
    findings = sitk.ReadImage(str(out / "nifti" / "findings.nii.gz"))
    arr = sitk.GetArrayFromImage(findings) == 1
    xs = [findings.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))[0] for k, j, i in np.argwhere(arr)[::50]]
    assert xs and np.mean(np.asarray(xs) > 0) > 0.9


def test_1mm_study(acute1):
    proc, out = acute1["proc"], acute1["out"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "aspects.json").read_text())
    validate(result)
    truth = acute1["truth"]
    assert result["affected_side"] == truth["affected_side"]
    assert abs(result["aspects"][truth["affected_side"]] - truth["aspects"][truth["affected_side"]]) <= 2
    assert read_aspects_from_sr(out / "dicom" / "sr.dcm") == result["aspects"]
    seg = hd.seg.segread(str(out / "dicom" / "seg.dcm"))
    assert len(seg.SegmentSequence) == 21
    regions = sitk.ReadImage(str(out / "nifti" / "regions.nii.gz"))
    assert set(np.unique(sitk.GetArrayFromImage(regions))) >= set(range(1, 21))
    assert set(result["regions"]["left"]) == set(REGION_CODES)
