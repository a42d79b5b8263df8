"""Output writers: DICOM SEG / SR / key images are valid DICOM and say what aspects.json says.

A 10-slice 128 x 128 synthetic CT series (tests/writers_fixtures.py) with an infarct in the
left hemisphere. External validators: dciodvfy (Debian dicom3tools) and dsrdump/dsr2xml
(Debian dcmtk); tests that need them are skipped with a reason when they are not installed.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from aspects.derived import NOT_FOR_DIAGNOSTIC_USE
from aspects.dicom_seg import N_SEGMENTS, build_segmentation, segment_stack, write_seg
from aspects.dicom_sr import read_aspects_from_sr, read_sr_summary, write_sr
from aspects.errors import InputError
from aspects.key_images import choose_key_slices, key_slices, write_key_images
from aspects.labels import REGION_COLOURS, label_value
from aspects.result_json import ResultSchemaError, problems, read_result, relative_outputs, write_result
from tests.writers_fixtures import BG_SLICE, SG_SLICE, make_ct_series, make_masks, make_result

REPO = Path(__file__).resolve().parents[1]
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing (apt-get install dicom3tools)")
needs_dcmtk = pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dsrdump missing (apt-get install dcmtk)")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Source series, masks, result and every output written by the pure writer functions."""
    out = tmp_path_factory.mktemp("writers")
    source = make_ct_series()
    infarct, regions = make_masks()
    result = make_result(source, infarct, regions)
    keys = write_key_images(source, infarct, regions, result, out)
    seg = write_seg(source, infarct, regions, result, out / "dicom" / "seg.dcm")
    sr = write_sr(source, result, out / "dicom" / "sr.dcm", key_sources=[source[k["slice"]] for k in keys.values()],
                  seg=pydicom.dcmread(seg, stop_before_pixels=True))
    result = dict(result, outputs=relative_outputs(out, seg=seg, sr=sr, key_images=[k["dcm"] for k in keys.values()],
                                                   png=[k["png"] for k in keys.values()]))
    write_result(result, out / "aspects.json")
    return {"out": out, "source": source, "infarct": infarct, "regions": regions, "result": result, "keys": keys}


DICOM_OUTPUTS = ["dicom/seg.dcm", "dicom/sr.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm"]


def test_all_outputs_exist_and_json_lists_them(case):
    out = case["out"]
    for rel in DICOM_OUTPUTS + ["png/key_bg.png", "png/key_sg.png", "aspects.json"]:
        assert (out / rel).is_file(), rel
    listed = read_result(out / "aspects.json")["outputs"]
    assert listed["seg"] == "dicom/seg.dcm" and listed["sr"] == "dicom/sr.dcm"
    assert sorted(listed["key_images"]) == ["dicom/key_bg.dcm", "dicom/key_sg.dcm"]
    assert all((out / p).is_file() for p in listed["key_images"] + listed["png"])


@needs_dciodvfy
@pytest.mark.parametrize("rel", DICOM_OUTPUTS)
def test_dciodvfy_reports_no_errors(case, rel):
    # Known warnings: "Unrecognized defined term <99ASPECTS>" (our private coding scheme) in SEG/SR.
    run = subprocess.run(["dciodvfy", str(case["out"] / rel)], capture_output=True, text=True, timeout=60)
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, f"{rel}:\n" + "\n".join(errors)


@pytest.mark.parametrize("rel", DICOM_OUTPUTS)
def test_derived_objects_keep_patient_and_study_with_new_uids(case, rel):
    src = case["source"][0]
    ds = pydicom.dcmread(case["out"] / rel)
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.AccessionNumber) == (
        src.PatientID, str(src.PatientName), src.PatientBirthDate, src.AccessionNumber)
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID not in {s.SOPInstanceUID for s in case["source"]}
    assert NOT_FOR_DIAGNOSTIC_USE in ds.SeriesDescription
    assert ds.Manufacturer and ds.SoftwareVersions == case["result"]["app"]["version"]


def test_seg_reads_back_with_21_segments_referencing_source(case):
    seg = hd.seg.segread(case["out"] / "dicom" / "seg.dcm")
    source, infarct, regions = case["source"], case["infarct"], case["regions"]
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.number_of_segments == N_SEGMENTS
    infarct_desc = seg.get_segment_description(1)
    assert infarct_desc.segmented_property_type.value == "55641003"  # SCT Infarct
    assert seg.get_segment_description(2).segment_label.startswith("Right C")
    assert seg.get_segment_description(label_value("left", "M6") + 1).segment_label.startswith("Left M6")
    assert seg.get_segment_description(label_value("left", "C") + 1).segmented_property_type.value == "11000004"
    # The infarct's frames reference exactly the source slices that hold infarct.
    uid_to_k = {ds.SOPInstanceUID: k for k, ds in enumerate(source)}
    ds = pydicom.dcmread(case["out"] / "dicom" / "seg.dcm")
    infarct_refs = set()
    for frame in ds.PerFrameFunctionalGroupsSequence:
        if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1:
            uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            infarct_refs.add(uid_to_k[uid])
    assert infarct_refs == set(np.nonzero(infarct.any(axis=(1, 2)))[0].tolist())
    # Pixel content round-trips for every segment on every referenced slice; others are empty.
    expected = segment_stack(infarct, regions)
    referenced = [uid for uid in uid_to_k if uid in {u for _, _, u in seg.get_source_image_uids()}]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=referenced, segment_numbers=list(range(1, N_SEGMENTS + 1))
    )
    ks = [uid_to_k[u] for u in referenced]
    assert np.array_equal(pixels.astype(bool), expected[ks])
    others = [k for k in range(len(source)) if k not in ks]
    assert not expected[others].any()


@pytest.mark.parametrize("empty_regions", [False, True])
def test_seg_without_infarct_still_describes_21_segments(case, tmp_path, empty_regions):
    source, regions = case["source"], case["regions"]
    regions = np.zeros_like(regions) if empty_regions else regions
    path = write_seg(source, np.zeros_like(case["infarct"]), regions, case["result"], tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == N_SEGMENTS
    ds = pydicom.dcmread(path)
    segs = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in ds.PerFrameFunctionalGroupsSequence]
    if empty_regions:  # nothing anywhere: empty frames are kept so the SEG is still a valid image
        assert ds.NumberOfFrames == N_SEGMENTS * len(source)
    else:
        assert 1 not in segs and ds.NumberOfFrames == sum(
            int((regions == v).any(axis=(1, 2)).sum()) for v in range(1, 21))


def test_seg_rejects_masks_off_the_source_grid(case):
    with pytest.raises(InputError, match="does not match the source series"):
        build_segmentation(case["source"], case["infarct"][:, :64], case["regions"], case["result"])


def test_sr_holds_the_result_aspects(case):
    path = case["out"] / "dicom" / "sr.dcm"
    assert read_aspects_from_sr(path) == case["result"]["aspects"]
    summary = read_sr_summary(path)
    assert summary["affected_side"] == case["result"]["affected_side"] == "left"
    assert summary["infarct_volume_ml"] == pytest.approx(case["result"]["infarct_volume_ml"], abs=1e-3)


def test_sr_groups_reference_the_seg_segments(case):
    sr = pydicom.dcmread(case["out"] / "dicom" / "sr.dcm")
    seg = pydicom.dcmread(case["out"] / "dicom" / "seg.dcm", stop_before_pixels=True)
    refs = [item.ReferencedSOPSequence[0] for item in _walk_sr(sr) if item.ValueType == "IMAGE"
            and item.ConceptNameCodeSequence[0].CodeMeaning == "Referenced Segment"]
    assert {r.ReferencedSOPInstanceUID for r in refs} == {seg.SOPInstanceUID}
    assert sorted(int(r.ReferencedSegmentNumber) for r in refs) == list(range(1, N_SEGMENTS + 1))
    evidence = {i.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in case["source"]} | {seg.SOPInstanceUID}


def _walk_sr(ds):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk_sr(item)


def test_sr_follows_a_different_result(case, tmp_path):
    result = copy.deepcopy(case["result"])
    for code in ("C", "L", "I", "M2"):
        result["regions"]["right"][code]["involved"] = True
    result["aspects"], result["affected_side"], result["score"] = {"left": 7, "right": 6}, "right", 6
    path = write_sr(case["source"], result, tmp_path / "sr.dcm")
    assert read_aspects_from_sr(path) == {"left": 7, "right": 6}
    assert read_sr_summary(path)["affected_side"] == "right"


def test_sr_reader_rejects_a_non_aspects_sr(case):
    with pytest.raises(ValueError, match="not an ASPECTS SR"):
        read_aspects_from_sr(case["out"] / "dicom" / "seg.dcm")


@needs_dcmtk
def test_dcmtk_parses_the_sr(case):
    path = str(case["out"] / "dicom" / "sr.dcm")
    dump = subprocess.run(["dsrdump", path], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert "Alberta Stroke Program Early CT Score" in dump.stdout and NOT_FOR_DIAGNOSTIC_USE in dump.stdout
    xml = subprocess.run(["dsr2xml", path], capture_output=True, text=True, timeout=60)
    assert xml.returncode == 0, xml.stderr
    values = [n.findtext("value") for n in ET.fromstring(xml.stdout).iter("num")
              if "Alberta Stroke" in ET.tostring(n, encoding="unicode")]
    assert sorted(float(v) for v in values) == sorted(float(v) for v in case["result"]["aspects"].values())


def _infarct_fill(rgb: np.ndarray) -> np.ndarray:
    """Pixels tinted by the semi-transparent red infarct fill (grey -> r - g = 0.45 * 255, g == b)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (np.abs(g - b) <= 1) & (np.abs(r - g - 115) <= 2)


def _flip_series(source, infarct, regions):
    """The same patient scanned with rows and columns reversed (IOP -1 0 0 0 -1 0)."""
    flipped = []
    for ds in source:
        ds = copy.deepcopy(ds)
        px = ds.pixel_array[::-1, ::-1].copy()
        ipp = np.asarray(ds.ImagePositionPatient, float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        ds.ImagePositionPatient = list(ipp + [(ds.Columns - 1) * dc, (ds.Rows - 1) * dr, 0])
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
        ds.PixelData = px.tobytes()
        flipped.append(ds)
    return flipped, infarct[:, ::-1, ::-1].copy(), regions[:, ::-1, ::-1].copy()


@pytest.mark.parametrize("flipped", [False, True])
def test_key_image_shows_regions_and_left_infarct_on_image_right(case, tmp_path, flipped):
    source, infarct, regions = case["source"], case["infarct"], case["regions"]
    if flipped:
        source, infarct, regions = _flip_series(source, infarct, regions)
    keys = write_key_images(source, infarct, regions, case["result"], tmp_path)
    rgb = np.asarray(Image.open(keys["BG"]["png"]).convert("RGB"))
    for code in ("C", "L", "IC", "I", "M1", "M2", "M3"):  # every BG region outlined in its colour
        assert (rgb == REGION_COLOURS[code]).all(axis=2).sum() > 20, code
    fill = _infarct_fill(rgb[-4 * 128 :])  # the picture below the text banner (enlarged 4x)
    half = rgb.shape[1] // 2
    assert fill[:, half:].sum() > 100 and fill[:, :half].sum() == 0  # patient left on image right
    sg = np.asarray(Image.open(keys["SG"]["png"]).convert("RGB"))
    assert (sg == REGION_COLOURS["M5"]).all(axis=2).sum() > 20
    assert (sg == REGION_COLOURS["C"]).all(axis=2).sum() == 0  # no BG region on the SG level
    # The secondary capture holds the same picture and references its source slice.
    sc = pydicom.dcmread(keys["BG"]["dcm"])
    assert np.array_equal(sc.pixel_array, rgb)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source[keys["BG"]["slice"]].SOPInstanceUID
    assert list(sc.PatientOrientation) == ["L", "P"]


def test_key_slices_follow_the_regions_or_the_result(case):
    regions = case["regions"]
    chosen = choose_key_slices(regions)
    assert 2 <= chosen["BG"] <= 4 and 6 <= chosen["SG"] <= 8
    assert key_slices({"key_slices": {"BG": BG_SLICE + 1, "SG": SG_SLICE}}, regions) == {"BG": BG_SLICE + 1, "SG": SG_SLICE}
    with pytest.raises(InputError, match="outside the series"):
        key_slices({"key_slices": {"BG": 99}}, regions)


def test_result_schema_accepts_the_result_and_names_each_problem(case):
    result = case["result"]
    assert problems(result) == []
    bad = copy.deepcopy(result)
    bad["aspects"]["left"] = 9  # inconsistent with 3 involved left regions
    bad["regions"]["right"]["M4"]["infarct_fraction"] = 1.5
    del bad["device"]
    assert problems(bad) == ["missing key: device"]
    bad["device"] = "cpu"
    found = problems(bad)
    assert any("infarct_fraction" in p for p in found)
    bad["regions"]["right"]["M4"]["infarct_fraction"] = 0.0
    assert any("aspects.left = 9" in p for p in problems(bad))
    with pytest.raises(ResultSchemaError, match="aspects.left"):
        write_result(bad, case["out"] / "bad.json")
    assert not (case["out"] / "bad.json").exists()


def test_writer_operators_in_a_monai_deploy_app(tmp_path):
    """The four operators wired as the app wires them write every file (runs in a subprocess)."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from holoscan.conditions import CountCondition
        from monai.deploy.core import Application, Operator
        from operators.writers import JSONWriterOperator, KeyImageWriterOperator, SegWriterOperator, SRWriterOperator
        from tests.writers_fixtures import make_ct_series, make_masks, make_result
        PORTS = ("source", "infarct", "regions", "result")
        class Source(Operator):
            def setup(self, spec):
                for name in PORTS:
                    spec.output(name)
            def compute(self, op_input, op_output, context):
                source = make_ct_series(); infarct, regions = make_masks()
                for name, value in zip(PORTS, (source, infarct, regions, make_result(source, infarct, regions))):
                    op_output.emit(value, name)
        class App(Application):
            def compose(self):
                out = Path({str(tmp_path)!r})
                src = Source(self, CountCondition(self, 1), name="source")
                seg = SegWriterOperator(self, output_folder=out, name="seg")
                sr = SRWriterOperator(self, output_folder=out, reference_seg=True, name="sr")
                key = KeyImageWriterOperator(self, output_folder=out, name="key")
                js = JSONWriterOperator(self, output_folder=out, name="json")
                for op, ports in ((seg, PORTS), (sr, ("source", "regions", "result")), (key, PORTS), (js, ("result",))):
                    self.add_flow(src, op, {{(p, p) for p in ports}})
                self.add_flow(seg, js, {{("seg_path", "seg_path")}})
                self.add_flow(seg, sr, {{("seg_path", "seg_path")}})
                self.add_flow(sr, js, {{("sr_path", "sr_path")}})
                self.add_flow(key, js, {{("key_images", "key_images")}})
        App().run()
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = read_result(tmp_path / "aspects.json")
    assert set(result["outputs"]) == {"seg", "sr", "key_images", "png"}
    for rel in [result["outputs"]["seg"], result["outputs"]["sr"], *result["outputs"]["key_images"], *result["outputs"]["png"]]:
        assert (tmp_path / rel).is_file(), rel
    assert read_aspects_from_sr(tmp_path / result["outputs"]["sr"]) == result["aspects"]
    seg_uid = pydicom.dcmread(tmp_path / result["outputs"]["seg"], stop_before_pixels=True).SOPInstanceUID
    sr = pydicom.dcmread(tmp_path / result["outputs"]["sr"])
    assert seg_uid in {i.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                       for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert json.loads((tmp_path / "aspects.json").read_text())["not_for_diagnostic_use"] is True


def test_result_writer_accepts_numpy_numbers_without_touching_the_input(case, tmp_path):
    result = copy.deepcopy(case["result"])
    result["aspects"] = {side: np.int64(v) for side, v in result["aspects"].items()}
    result["infarct_volume_ml"] = np.float32(result["infarct_volume_ml"])
    write_result(result, tmp_path / "aspects.json")
    back = read_result(tmp_path / "aspects.json")
    assert back["aspects"] == case["result"]["aspects"] and isinstance(back["aspects"]["left"], int)
    assert isinstance(result["aspects"]["left"], np.int64)
