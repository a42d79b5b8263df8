"""Output writers: DICOM SEG / SR / KOS / key images are valid DICOM and say what aspects.json says.

A 10-slice 128 x 128 synthetic CT series (tests/support/ct_series.py) with an infarct in the
left hemisphere. External validators and readers: dciodvfy (Debian dicom3tools), dsrdump/dsr2xml
(Debian dcmtk) and dcmqi (PyPI; tests/dcmqi_readback.py); tests that need them are skipped with
a reason when they are not installed.
"""

from __future__ import annotations

import copy
import io
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
import SimpleITK as sitk
from PIL import Image

from aspects.derived import NOT_FOR_DIAGNOSTIC_USE
from aspects.dicom_kos import write_kos
from aspects.dicom_seg import N_SEGMENTS, build_segmentation, region_segment_number, segment_stack, write_seg
from aspects.dicom_sr import read_aspects_from_sr, read_sr_summary, write_sr
from aspects.errors import InputError
from aspects.key_images import banner_lines, choose_key_slices, key_slices, render, write_key_images
from aspects.labels import REGION_CODES, REGION_COLOURS, SIDES, label_value
from aspects.methods import methods_text
from aspects.result_json import ResultSchemaError, problems, read_result, relative_outputs, validate, write_result
from aspects.volume import on_grid, series_grid
from tests.support.dcmqi_readback import mask_on, needs_dcmqi, read_seg, read_sr, region_colours, sr_texts, sr_values
from tests.support.ct_series import (
    BG_SLICE,
    SG_SLICE,
    make_ct_series,
    make_incomplete_result,
    make_masks,
    make_result,
)

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
    key_sources = [source[k["slice"]] for k in keys.values()]
    seg = write_seg(source, infarct, regions, result, out / "dicom" / "seg.dcm")
    sr = write_sr(source, result, out / "dicom" / "sr.dcm", key_sources=key_sources, seg=_header(seg))
    kos = write_kos(key_sources, [_header(k["dcm"]) for k in keys.values()], _header(sr), out / "dicom" / "kos.dcm",
                    seg=_header(seg), result=result)
    grid = series_grid(source)  # the NIfTI masks as the app writes them (source grid, LPS)
    for name, mask in (("infarct", infarct), ("regions", regions)):
        (out / "nifti").mkdir(exist_ok=True)
        sitk.WriteImage(on_grid(mask.astype(np.uint8), grid), str(out / "nifti" / f"{name}.nii.gz"))
    result = dict(result, outputs=relative_outputs(out, seg=seg, sr=sr, kos=kos, key_images=[k["dcm"] for k in keys.values()],
                                                   png=[k["png"] for k in keys.values()]))
    write_result(result, out / "aspects.json")
    return {"out": out, "source": source, "infarct": infarct, "regions": regions, "result": result, "keys": keys}


def _header(path):
    return pydicom.dcmread(path, stop_before_pixels=True)


DICOM_OUTPUTS = ["dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm"]


def test_all_outputs_exist_and_json_lists_them(case):
    out = case["out"]
    for rel in DICOM_OUTPUTS + ["png/key_bg.png", "png/key_sg.png", "aspects.json"]:
        assert (out / rel).is_file(), rel
    listed = read_result(out / "aspects.json")["outputs"]
    assert (listed["seg"], listed["sr"], listed["kos"]) == ("dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm")
    assert sorted(listed["key_images"]) == ["dicom/key_bg.dcm", "dicom/key_sg.dcm"]
    assert all((out / p).is_file() for p in listed["key_images"] + listed["png"])


def test_the_seg_and_sr_say_how_the_infarct_model_ran(case):
    """The infarct segment's algorithm carries the model run of aspects.json ``methods`` as
    Algorithm Parameters; the regions' (atlas) carry none; the SR's note names both."""
    seg = hd.seg.segread(str(case["out"] / "dicom" / "seg.dcm"))
    algorithms = [d.SegmentationAlgorithmIdentificationSequence for d in seg.SegmentSequence]
    infarct = hd.AlgorithmIdentificationSequence.from_sequence(algorithms[0])
    assert infarct.parameters == {"model_version": "0.5.0", "second_channel": "contra", "mirror_tta": "agree"}
    assert all(hd.AlgorithmIdentificationSequence.from_sequence(a).parameters is None for a in algorithms[1:])
    notes = list(sr_texts(pydicom.dcmread(case["out"] / "dicom" / "sr.dcm")))
    assert "Methods: regions by atlas, infarct by model (version 0.5.0, mirror pass agree)." in notes
    assert methods_text({"regions": "atlas", "infarct": "asymmetry"}) == "Methods: regions by atlas, infarct by asymmetry."


@pytest.mark.external
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


def _cielab(value) -> np.ndarray:
    """DICOM RecommendedDisplayCIELabValue (0..65535 each) as L*, a*, b*."""
    v = np.asarray(value, float) / 65535.0
    return np.array([100.0 * v[0], 255.0 * v[1] - 128.0, 255.0 * v[2] - 128.0])


def test_seg_names_its_creator_and_tells_left_from_right_by_colour(case):
    ds = _header(case["out"] / "dicom" / "seg.dcm")
    assert str(ds.ContentCreatorName) == "aspects-ncct^"
    lab = {int(d.SegmentNumber): _cielab(d.RecommendedDisplayCIELabValue) for d in ds.SegmentSequence}
    assert len(lab) == N_SEGMENTS
    # Every two of the 21 segments differ by more than 15 CIELAB units (Delta E 1976).
    closest = min(np.linalg.norm(lab[a] - lab[b]) for a in lab for b in lab if a < b)
    assert closest > 15.0, closest
    for code in REGION_CODES:  # and the left segment of a region is the darker one
        right, left = (lab[region_segment_number(label_value(side, code))] for side in SIDES)
        assert left[0] < right[0] - 10, code


def test_sr_holds_the_result(case):
    path = case["out"] / "dicom" / "sr.dcm"
    result = case["result"]
    assert read_aspects_from_sr(path) == result["aspects"]
    summary = read_sr_summary(path)
    assert summary["affected_side"] == result["affected_side"] == "left"
    assert summary["score"] == result["score"] == 7
    assert summary["infarct_volume_ml"] == pytest.approx(result["infarct_volume_ml"], abs=1e-3)
    for side in SIDES:
        for code in REGION_CODES:
            got, want = summary["regions"][side][code], result["regions"][side][code]
            assert got["involved"] is want["involved"], (side, code)
            assert got["infarct_ml"] == pytest.approx(want["infarct_ml"], abs=1e-3)
            assert got["region_ml"] == pytest.approx(want["region_ml"], abs=1e-3)
            assert got["infarct_fraction"] == pytest.approx(want["infarct_fraction"], abs=1e-4)
    # The case: the infarct inside left L is reported as such, not as the region's volume.
    left_l = summary["regions"]["left"]["L"]
    assert 0 < left_l["infarct_ml"] < left_l["region_ml"]


def test_the_sr_handed_its_content_is_byte_for_byte_the_one_highdicom_copies(case, monkeypatch):
    """build_sr hands the report tree to highdicom instead of letting it deep-copy it (a speed
    change): the SR written is the same bytes as with highdicom's own copy."""
    import itertools

    from aspects import dicom_seg, dicom_sr

    def build(hand_over):
        uids = (f"1.2.826.0.1.3680043.8.498.{k}" for k in itertools.count(1))
        monkeypatch.setattr(dicom_sr, "new_uid", lambda: next(uids))
        monkeypatch.setattr(dicom_seg, "new_uid", lambda: next(uids))
        monkeypatch.setattr(dicom_sr, "_handed_over", hand_over)
        seg = build_segmentation(case["source"], case["infarct"], case["regions"], case["result"])
        sr = dicom_sr.build_sr(case["source"], case["result"], key_sources=case["source"][:2], seg=seg)
        for name in ("ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
                     "SeriesDate", "SeriesTime"):  # the clock, read at each build
            if name in sr:
                setattr(sr, name, "20260101" if name.endswith("Date") else "120000")
        for item in sr.get("ContributingEquipmentSequence", []):
            item.ContributionDateTime = "20260101120000"
        buf = io.BytesIO()
        sr.save_as(buf, enforce_file_format=True)
        return sr, buf.getvalue()

    handed, handed_bytes = build(dicom_sr._handed_over)
    copied, copied_bytes = build(lambda item: item)  # highdicom deep-copies the tree
    assert type(handed.ContentSequence[0]) is type(copied.ContentSequence[0])
    assert len(handed_bytes) > 10000 and handed_bytes == copied_bytes


@pytest.mark.parametrize("missing, aspects, score", [
    ([("left", "M4"), ("left", "M5")], {"right": 10, "left": None}, None),  # the affected side
    ([("right", "M6")], {"right": None, "left": 7}, 7),  # the other side: the overall score stands
])
def test_sr_reports_regions_not_assessable(case, tmp_path, missing, aspects, score):
    result = make_incomplete_result(case["result"], missing)
    path = write_sr(case["source"], result, tmp_path / "sr.dcm")
    summary = read_sr_summary(path)
    assert summary["aspects"] == aspects and summary["score"] == score
    for side, code in missing:
        region = summary["regions"][side][code]
        assert region["involved"] is None  # coded "Not assessable", neither Yes nor No
        assert region["infarct_ml"] == pytest.approx(result["regions"][side][code]["infarct_ml"], abs=1e-3)
    assert summary["regions"]["left"]["L"]["involved"] is True
    comments = [i.TextValue for i in _walk_sr(pydicom.dcmread(path)) if i.ValueType == "TEXT"]
    side = missing[0][0]
    regions = ", ".join(f"{s} {c}" for s, c in missing)
    assert f"ASPECTS {side} not reported: region(s) {regions} not assessable (incomplete coverage)." in comments
    assert any("incomplete_coverage" in c for c in comments)
    assert any(c.startswith("Overall ASPECTS not reported") for c in comments) is (score is None)


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


@pytest.mark.external
@needs_dciodvfy
def test_sr_carries_the_region_evidence(case, tmp_path):
    """Per-region evidence (HU difference to the mirror, calibrated score) reaches the SR, and a
    region involved by evidence alone reads back as involved."""
    result = copy.deepcopy(case["result"])
    for side in ("right", "left"):
        for r in result["regions"][side].values():
            r["involved_by"] = ["mask"] if r["involved"] else []
            r["evidence"] = {"delta_hu": 0.4, "z": 0.5, "n_voxels": 800, "called": False}
    m5 = result["regions"]["right"]["M5"]
    assert not m5["involved"]
    m5.update(involved=True, involved_by=["evidence"], evidence={"delta_hu": 0.71, "z": 1.5, "partial_hu": 2.43,
                                                                 "partial_z": 6.1, "n_voxels": 900, "called": True,
                                                                 "volume_loss": -0.012, "volume_loss_veto": False})
    result["aspects"]["right"] -= 1
    result["affected_side"] = min(("right", "left"), key=lambda s: (result["aspects"][s], s != "right"))
    result["score"] = result["aspects"][result["affected_side"]]
    validate(result)
    path = write_sr(case["source"], result, tmp_path / "sr.dcm")
    back = read_sr_summary(path)["regions"]["right"]["M5"]
    assert back["involved"] is True and back["evidence_delta_hu"] == pytest.approx(0.71)
    assert back["evidence_z"] == pytest.approx(1.5)
    # Called by the partial-region statistic: a reader of the SR sees why.
    assert back["evidence_partial_hu"] == pytest.approx(2.43) and back["evidence_partial_z"] == pytest.approx(6.1)
    # and that its CSF spaces are no wider than the mirror's (no volume loss: not an old infarct)
    assert back["evidence_volume_loss"] == pytest.approx(-0.012)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert not [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]


def test_sr_carries_the_mask_check_of_a_region_whose_mask_call_it_withdrew(case, tmp_path):
    """A region the voxel mask covers past the fraction threshold but whose masked tissue is no
    darker than its mirror is not involved; the SR's infarct-in-region group says how dark it was."""
    result = copy.deepcopy(case["result"])
    side, code = next((s, c) for s in SIDES for c in REGION_CODES if result["regions"][s][c]["involved"])
    region = result["regions"][side][code]
    region.update(involved=False, involved_by=[], mask_check={"masked_hu": 0.31, "n_voxels": 120, "passed": False})
    result["aspects"][side] += 1
    result["affected_side"] = (None if result["aspects"]["left"] == result["aspects"]["right"]
                               else min(SIDES, key=lambda s: result["aspects"][s]))
    result["score"] = result["aspects"][result["affected_side"]] if result["affected_side"] else 10
    validate(result)
    back = read_sr_summary(write_sr(case["source"], result, tmp_path / "sr.dcm"))["regions"][side][code]
    assert back["involved"] is False and back["mask_check_masked_hu"] == pytest.approx(0.31)
    assert back["infarct_fraction"] == pytest.approx(region["infarct_fraction"], abs=1e-3)


def _with_marginal_calls(result):
    """The result with its first involved region's call marginal, an uninvolved region of the
    same side marginal too (a mask 8 % of it) and a third region whose mask call was not counted
    (unsupported) and a fourth whose evidence call was not counted (no acute mask there); the range follows."""
    result = copy.deepcopy(result)
    side = next(s for s in SIDES if result["aspects"][s] < 10)
    called = next(c for c in REGION_CODES if result["regions"][side][c]["involved"])
    quiet = [c for c in REGION_CODES if not result["regions"][side][c]["involved"]]
    result["regions"][side][called].update(marginal=True, involved_by=["mask"])
    result["regions"][side][quiet[0]].update(marginal=True, infarct_fraction=0.08, involved_by=[])
    result["regions"][side][quiet[1]].update(unsupported_mask_call=True, infarct_fraction=0.12, involved_by=[])
    result["regions"][side][quiet[2]].update(evidence_without_mask=True, infarct_fraction=0.0, involved_by=[])
    a = result["aspects"][side]
    result["aspects_range"] = {s: [result["aspects"][s]] * 2 for s in SIDES}
    result["aspects_range"][side] = [a - 1, a + 1]
    validate(result)
    return result, side, called, quiet


@pytest.mark.external
@needs_dciodvfy
def test_sr_carries_the_marginal_calls_the_range_and_the_calls_not_counted(case, tmp_path):
    """Session 17: the SR says which calls are marginal (Call near involvement threshold: Yes),
    which mask call was not counted and why, each hemisphere's ASPECTS range, and a comment a
    reader sees in the PACS; dciodvfy accepts it."""
    result, side, called, quiet = _with_marginal_calls(case["result"])
    path = write_sr(case["source"], result, tmp_path / "sr.dcm", seg=_header(case["out"] / "dicom" / "seg.dcm"))
    summary = read_sr_summary(path)
    assert summary["aspects_range"] == result["aspects_range"]
    back = summary["regions"][side]
    assert back[called]["marginal"] is True and back[called]["involved"] is True
    assert back[quiet[0]]["marginal"] is True and back[quiet[0]]["involved"] is False
    assert back[quiet[1]]["not_counted"] == "unsupported_mask_call" and "marginal" not in back[quiet[1]]
    assert back[quiet[2]]["not_counted"] == "evidence_without_mask" and back[quiet[2]]["involved"] is False
    assert not any(r.get("marginal") for s in SIDES for c, r in summary["regions"][s].items()
                   if (s, c) not in ((side, called), (side, quiet[0])))
    comments = [i.TextValue for i in _walk_sr(pydicom.dcmread(path)) if i.ValueType == "TEXT"]
    low, high = result["aspects_range"][side]
    note = next(c for c in comments if c.startswith(f"ASPECTS {side} {result['aspects'][side]}, range {low}-{high}"))
    assert f"{side} {quiet[0]} 8 % (not involved)" in note and f"{side} {called} " in note
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert not [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]


def test_key_image_marks_the_marginal_calls_and_shows_the_range(case, tmp_path):
    result, side, called, quiet = _with_marginal_calls(case["result"])
    lines = banner_lines(result, "BG", 3, 10)
    low, high = result["aspects_range"][side]
    assert f"{side} {result['aspects'][side]} (range {low}-{high})" in lines[0]
    assert lines[0].count("range") == 1  # the other side has no marginal call: no range shown
    assert any(ln.startswith("Marginal calls (?), infarct near the 10 % threshold")
               and f"{side}\u00a0{quiet[0]}\u00a08\u00a0%" in ln for ln in lines)  # wrapped between entries only
    plain = banner_lines(case["result"], "BG", 3, 10)  # no marginal call: neither range nor line
    assert "range" not in plain[0] and not any(ln.startswith("Marginal") for ln in plain)


def test_key_image_banner_names_the_flags_in_red(case):
    result = dict(case["result"], flags=["haemorrhage_suspected", "infarct_outside_mca", "incomplete_coverage"],
                  flag_details={"haemorrhage_suspected": {"volume_ml": 0.48}, "infarct_outside_mca": {"volume_ml": 4.33}})
    lines = banner_lines(result, "BG", 3, 10)
    nb = "\u00a0"
    assert [ln for ln in lines if ln.startswith("Flags: ")] == [
        f"Flags: HAEMORRHAGE{nb}SUSPECTED{nb}(0.5{nb}ml), infarct{nb}outside{nb}the{nb}MCA{nb}territory{nb}(4.3{nb}ml)"]
    low = dict(case["result"], flags=["low_confidence"], qc={"reasons": ["poor registration to the template (NCC 0.41 < 0.5)"]})
    assert "Flags: LOW CONFIDENCE: poor registration to the template (NCC 0.41 < 0.5)" in banner_lines(low, "BG", 3, 10)
    assert not any(ln.startswith("Flags") for ln in banner_lines(dict(case["result"], flags=[]), "BG", 3, 10))
    hu, none = np.full((64, 64), 35.0, np.float32), np.zeros((64, 64), np.uint8)

    def red_text(line):
        picture = render(hu, none, none.astype(bool), [line])
        banner = picture[: picture.shape[0] - picture.shape[1]]  # the slice below it is square
        return bool(((banner[..., 0] > 200) & (banner[..., 1] < 120)).any())

    assert red_text(lines[[ln.startswith("Flags: ") for ln in lines].index(True)])
    assert not red_text(lines[0])  # the ASPECTS line stays white


def test_sr_comment_gives_each_flag_with_its_volume(case, tmp_path):
    result = dict(case["result"], flags=["haemorrhage_suspected", "low_confidence"],
                  flag_details={"haemorrhage_suspected": {"volume_ml": 0.48}})
    path = write_sr(case["source"], result, tmp_path / "sr.dcm")
    comments = [i.TextValue for i in _walk_sr(pydicom.dcmread(path)) if i.ValueType == "TEXT"]
    assert "Flags: haemorrhage_suspected (0.5 ml), low_confidence." in comments
    plain = write_sr(case["source"], dict(case["result"], flags=[]), tmp_path / "plain.dcm")
    assert "Flags: none." in [i.TextValue for i in _walk_sr(pydicom.dcmread(plain)) if i.ValueType == "TEXT"]


def test_sr_reader_rejects_a_non_aspects_sr(case):
    with pytest.raises(ValueError, match="not an ASPECTS SR"):
        read_aspects_from_sr(case["out"] / "dicom" / "seg.dcm")


@pytest.mark.external
@needs_dciodvfy
def test_dciodvfy_accepts_an_sr_with_regions_not_assessable(case, tmp_path):
    result = make_incomplete_result(case["result"], [("left", "M4"), ("left", "M5")])
    path = write_sr(case["source"], result, tmp_path / "sr.dcm", seg=_header(case["out"] / "dicom" / "seg.dcm"))
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


@pytest.mark.external
@needs_dcmtk
def test_dcmtk_parses_the_sr(case):
    path = str(case["out"] / "dicom" / "sr.dcm")
    dump = subprocess.run(["dsrdump", path], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert "Alberta Stroke Program Early CT score" in dump.stdout and NOT_FOR_DIAGNOSTIC_USE in dump.stdout
    xml = subprocess.run(["dsr2xml", path], capture_output=True, text=True, timeout=60)
    assert xml.returncode == 0, xml.stderr
    values = [n.findtext("value") for n in ET.fromstring(xml.stdout).iter("num")
              if "Alberta Stroke" in ET.tostring(n, encoding="unicode")]
    expected = [case["result"]["score"], *case["result"]["aspects"].values()]  # overall, right, left
    assert sorted(float(v) for v in values) == sorted(float(v) for v in expected)
    kos = subprocess.run(["dsrdump", str(case["out"] / "dicom" / "kos.dcm")], capture_output=True, text=True, timeout=60)
    assert kos.returncode == 0 and '"Of Interest"' in kos.stdout, kos.stdout + kos.stderr


def test_kos_flags_the_key_images_source_slices_sr_and_seg(case):
    out, source = case["out"], case["source"]
    kos = pydicom.dcmread(out / "dicom" / "kos.dcm")
    assert kos.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection Document Storage
    title = kos.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113000", "DCM")  # Of Interest
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
            if i.ValueType in ("IMAGE", "COMPOSITE")]
    keys = case["keys"].values()
    expected = ({source[k["slice"]].SOPInstanceUID for k in keys} | {_header(k["dcm"]).SOPInstanceUID for k in keys}
                | {_header(out / "dicom" / n).SOPInstanceUID for n in ("sr.dcm", "seg.dcm")})
    assert len(refs) == len(expected) == 6 and set(refs) == expected
    evidence = {i.ReferencedSOPInstanceUID for st in kos.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert evidence == expected
    text = [i.TextValue for i in kos.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "113012"]
    assert len(text) == 1 and text[0].startswith("ASPECTS 7 (left)") and NOT_FOR_DIAGNOSTIC_USE in text[0]


def test_kos_rejects_objects_of_another_study(case, tmp_path):
    keys = [case["source"][k["slice"]] for k in case["keys"].values()]
    sr = _header(case["out"] / "dicom" / "sr.dcm")
    sr.StudyInstanceUID = pydicom.uid.generate_uid()
    with pytest.raises(InputError, match="2 studies"):
        write_kos(keys, [], sr, tmp_path / "kos.dcm")
    assert not (tmp_path / "kos.dcm").exists()


@needs_dcmqi
def test_dcmqi_reads_the_sr_as_aspects_json_says(case, tmp_path):
    result = case["result"]
    seen = sr_values(read_sr(case["out"] / "dicom" / "sr.dcm", tmp_path))
    assert (seen["score"], seen["aspects"]) == (result["score"], result["aspects"])
    assert seen["infarct_volume_ml"] == pytest.approx(result["infarct_volume_ml"], abs=1e-3)
    for side in SIDES:
        for code in REGION_CODES:
            got, want = seen["regions"][(side, code)], result["regions"][side][code]
            assert got["segment"] == region_segment_number(label_value(side, code))
            assert got["region_ml"] == pytest.approx(want["region_ml"], abs=1e-3), (side, code)
            assert got["infarct_ml"] == pytest.approx(want["infarct_ml"], abs=1e-3), (side, code)
            assert got["involvement"] == ["Yes" if want["involved"] else "No"]


@needs_dcmqi
def test_dcmqi_reads_the_marginal_calls_and_the_range_as_aspects_json_says(case, tmp_path):
    """3D Slicer's reader (dcmqi) sees each region's marginal call and the mask call not counted
    beside its involvement, and the hemisphere's range beside its ASPECTS."""
    result, side, called, quiet = _with_marginal_calls(case["result"])
    path = write_sr(case["source"], result, tmp_path / "sr.dcm", seg=_header(case["out"] / "dicom" / "seg.dcm"))
    meta = read_sr(path, tmp_path)
    seen = sr_values(meta)
    assert seen["regions"][(side, called)]["involvement"] == ["Yes", "Yes"]  # involved; near the threshold
    assert seen["regions"][(side, quiet[0])]["involvement"] == ["No", "Yes"]
    assert seen["regions"][(side, quiet[1])]["involvement"] == ["No", "Region not darker than mirrored region"]
    spans = {}
    for g in meta["Measurements"]:
        items = {m["quantity"]["CodeValue"]: float(m["value"]) for m in g.get("measurementItems", [])}
        if "ASPLOW" in items:
            spans[(g.get("Laterality") or {}).get("CodeMeaning")] = [items["ASPLOW"], items["ASPHIGH"]]
    assert {k.lower(): v for k, v in spans.items()} == result["aspects_range"]


@needs_dcmqi
def test_dcmqi_reads_the_seg_as_the_nifti_masks_and_the_sr_volumes(case, tmp_path):
    out = case["out"]
    meta, images = read_seg(out / "dicom" / "seg.dcm", tmp_path)
    assert sorted(images) == list(range(1, N_SEGMENTS + 1))
    assert meta["ContentCreatorName"] == "aspects-ncct^"
    reference = sitk.ReadImage(str(out / "nifti" / "regions.nii.gz"))
    regions_nii = sitk.GetArrayFromImage(reference)
    infarct_nii = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "infarct.nii.gz"))) > 0
    infarct = mask_on(images[1], 1, reference)
    assert infarct.any() and np.array_equal(infarct, infarct_nii)
    # Each region segment is the NIfTI label, and the volumes dcmqi reads from the SR are those
    # of dcmqi's own SEG masks: the region's volume and the infarct inside it.
    seen = sr_values(read_sr(out / "dicom" / "sr.dcm", tmp_path))
    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000.0
    colours = region_colours(meta)
    for side in SIDES:
        for code in REGION_CODES:
            label = label_value(side, code)
            region = mask_on(images[label + 1], label + 1, reference)
            assert np.array_equal(region, regions_nii == label), (side, code)
            sr = seen["regions"][(side, code)]
            assert sr["region_ml"] == pytest.approx(region.sum() * voxel_ml, abs=1e-3)
            assert sr["infarct_ml"] == pytest.approx((region & infarct).sum() * voxel_ml, abs=1e-3)
        right, left = (next(k for k in colours if k.startswith(f"{s} {code} (")) for s in ("Right", "Left"))
        assert colours[right] != colours[left], code


@needs_dcmqi
def test_dcmqi_reads_not_assessable_regions(case, tmp_path):
    result = make_incomplete_result(case["result"], [("left", "M4"), ("left", "M5")])
    path = write_sr(case["source"], result, tmp_path / "sr.dcm")
    seen = sr_values(read_sr(path, tmp_path))
    assert seen["aspects"] == {"right": 10, "left": None} and seen["score"] is None
    assert seen["regions"][("left", "M4")]["involvement"] == ["Not assessable"]
    assert seen["regions"][("left", "M6")]["involvement"] == ["No"]


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


def _pitched_regions() -> np.ndarray:
    """A region map of a head pitched against the atlas, 10 slices (index 0 at the top): M4 on
    slices 0-4, M5 on 1-8, M6 from slice 3 widening downwards (largest on 9), the caudate body on
    every slice. The largest SG area is on slice 8 (M5 and M6, no M4)."""
    regions = np.zeros((10, 40, 40), np.uint8)
    for side, x0 in (("right", 2), ("left", 22)):
        regions[0:5, 2:10, x0:x0 + 10] = label_value(side, "M4")
        regions[1:9, 12:20, x0:x0 + 10] = label_value(side, "M5")
        for k in range(3, 10):
            regions[k, 22:38, x0:x0 + 2 * (k - 2)] = label_value(side, "M6")
        regions[:, 30:34, x0 + 14:x0 + 17] = label_value(side, "C")
    return regions


def test_the_sg_key_slice_shows_m4_m5_and_m6_on_a_pitched_head():
    # The slice of the largest SG area (8: M6 wide, and M5) has no M4; a reader expects the SG
    # picture to show the three regions, so the key slice is one where all six are (3-4).
    regions = _pitched_regions()
    k = choose_key_slices(regions)["SG"]
    assert k in (3, 4)
    for side in ("right", "left"):
        for code in ("M4", "M5", "M6"):
            assert (regions[k] == label_value(side, code)).any(), (side, code)


def test_each_key_image_outlines_only_its_levels_regions(case, tmp_path):
    # The 3-D atlas's caudate body reaches the SG slice of a pitched head; the SG picture outlines
    # M4-M6 only, as a reader assigns the regions to the two levels.
    source = case["source"]
    regions = _pitched_regions()
    regions = np.pad(regions, ((0, 0), (0, source[0].Rows - 40), (0, source[0].Columns - 40)))
    keys = write_key_images(source, np.zeros_like(regions), regions, case["result"], tmp_path)
    sg = np.asarray(Image.open(keys["SG"]["png"]).convert("RGB"))
    for code in ("M4", "M5", "M6"):
        assert (sg == REGION_COLOURS[code]).all(axis=2).sum() > 20, code
    assert (sg == REGION_COLOURS["C"]).all(axis=2).sum() == 0
    assert (regions[keys["SG"]["slice"]] == label_value("left", "C")).any()  # the caudate is on that slice


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


@pytest.mark.slow
def test_writer_operators_in_a_monai_deploy_app(tmp_path):
    """The six writer operators wired as the app wires them write every file (runs in a subprocess)."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from holoscan.conditions import CountCondition
        from monai.deploy.core import Application, Operator
        from aspects.assess import ScoredStudy
        from operators.writers import (JSONWriterOperator, KeyImageWriterOperator, KOSWriterOperator,
                                       NiftiWriterOperator, SegWriterOperator, SRWriterOperator)
        from tests.support.ct_series import make_ct_series, make_masks, make_result
        class Source(Operator):
            OUT_SCORED = "scored"
            def setup(self, spec):
                spec.output(self.OUT_SCORED)
            def compute(self, op_input, op_output, context):
                source = make_ct_series(); infarct, regions = make_masks()
                scored = ScoredStudy(make_result(source, infarct, regions), infarct, regions, tuple(source))
                op_output.emit(scored, self.OUT_SCORED)
        class App(Application):
            def compose(self):
                out = Path({str(tmp_path)!r})
                src = Source(self, CountCondition(self, 1), name="source")
                seg = SegWriterOperator(self, output_folder=out, name="seg")
                sr = SRWriterOperator(self, output_folder=out, reference_seg=True, name="sr")
                key = KeyImageWriterOperator(self, output_folder=out, name="key")
                kos = KOSWriterOperator(self, output_folder=out, name="kos")
                nifti = NiftiWriterOperator(self, output_folder=out, name="nifti")
                js = JSONWriterOperator(self, output_folder=out, wait_for=JSONWriterOperator.PORTS, name="json")
                for op in (seg, sr, key, kos, nifti, js):
                    self.add_flow(src, op, {{(src.OUT_SCORED, op.IN_SCORED)}})
                self.add_flow(seg, sr, {{(seg.OUT_SEG, sr.IN_SEG)}})
                self.add_flow(seg, kos, {{(seg.OUT_SEG, kos.IN_SEG)}})
                self.add_flow(sr, kos, {{(sr.OUT_SR, kos.IN_SR)}})
                self.add_flow(key, kos, {{(key.OUT_KEY_IMAGES, kos.IN_KEY_IMAGES)}})
                for op, out, into in ((seg, seg.OUT_SEG, js.IN_SEG), (sr, sr.OUT_SR, js.IN_SR),
                                      (key, key.OUT_KEY_IMAGES, js.IN_KEY_IMAGES), (kos, kos.OUT_KOS, js.IN_KOS),
                                      (nifti, nifti.OUT_NIFTI, js.IN_NIFTI)):
                    self.add_flow(op, js, {{(out, into)}})
        App().run()
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = read_result(tmp_path / "aspects.json")
    assert set(result["outputs"]) == {"seg", "sr", "kos", "key_images", "png", "nifti"}
    outputs = result["outputs"]
    for rel in [outputs[k] for k in ("seg", "sr", "kos")] + outputs["key_images"] + outputs["png"] + list(outputs["nifti"].values()):
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


# ----------------------------------------------------------------- flagged findings, shown where they are
HAEM, OLD, OUTSIDE = "haemorrhage_suspected", "old_infarct_suspected", "infarct_outside_mca"


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    """The writers' case with a suspected haemorrhage (right, across the BG regions' slices,
    largest on the last) and a suspected old infarct (right, across the SG regions' first two
    slices, largest on the second) located, and an acute infarct outside the MCA territory (slice
    0, below the regions: a key image of its own, no segment)."""
    out = tmp_path_factory.mktemp("flagged")
    source = make_ct_series()
    infarct, regions = make_masks()
    blood = np.zeros_like(infarct)
    blood[BG_SLICE - 1:BG_SLICE + 1, 70:74, 40:44] = True
    blood[BG_SLICE + 1, 68:76, 38:46] = True
    old = np.zeros_like(infarct)
    old[SG_SLICE - 1:SG_SLICE + 1, 30:40, 30:42] = True
    old[SG_SLICE, 28:42, 28:44] = True
    outside = np.zeros_like(infarct)  # a posterior-circulation infarct below the BG slices
    outside[0, 90:100, 70:80] = True
    infarct = infarct | outside
    findings = {HAEM: blood, OLD: old}
    result = make_result(source, infarct, regions)
    result.update(flags=[HAEM, OLD, OUTSIDE], flag_details={HAEM: {"volume_ml": 1.2, "seg_segment": N_SEGMENTS + 1},
                                                            OLD: {"volume_ml": 3.4, "seg_segment": N_SEGMENTS + 2},
                                                            OUTSIDE: {"volume_ml": 0.6}})
    keys = write_key_images(source, infarct, regions, result, out, findings={**findings, OUTSIDE: outside})
    seg = write_seg(source, infarct, regions, result, out / "dicom" / "seg.dcm", findings)
    key_sources = [source[keys[level]["slice"]] for level in ("BG", "SG")]
    sr = write_sr(source, result, out / "dicom" / "sr.dcm", key_sources=key_sources, seg=_header(seg))
    kos = write_kos([source[k["slice"]] for k in keys.values()], [_header(k["dcm"]) for k in keys.values()], _header(sr),
                    out / "dicom" / "kos.dcm", seg=_header(seg), result=result)
    return {"out": out, "source": source, "findings": findings, "result": result, "keys": keys, "seg": seg, "sr": sr,
            "kos": kos}


def test_a_located_finding_is_a_seg_segment_of_its_own(flagged):
    """Segments 22 and 23: what each is (coded; the old infarct an infarct qualified chronic, so
    no reader takes it for the acute one), in its own colour, and exactly its mask."""
    seg = hd.seg.segread(flagged["seg"])
    assert seg.number_of_segments == N_SEGMENTS + 2
    haem, old = seg.get_segment_description(N_SEGMENTS + 1), seg.get_segment_description(N_SEGMENTS + 2)
    assert (haem.segment_label, haem.segmented_property_type.value) == ("Suspected haemorrhage", "50960005")
    assert (old.segment_label, old.segmented_property_type.value) == ("Suspected old infarct", "55641003")
    modifier = old.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert modifier.CodeValue == "90734009"  # SCT Chronic
    source = flagged["source"]
    for number, name in ((N_SEGMENTS + 1, HAEM), (N_SEGMENTS + 2, OLD)):
        mask = flagged["findings"][name]
        ks = np.flatnonzero(mask.any(axis=(1, 2)))
        pixels = seg.get_pixels_by_source_instance([source[k].SOPInstanceUID for k in ks], segment_numbers=[number])
        assert np.array_equal(pixels[..., 0].astype(bool), mask[ks]), name
    lab = {int(d.SegmentNumber): _cielab(d.RecommendedDisplayCIELabValue) for d in pydicom.dcmread(flagged["seg"]).SegmentSequence}
    closest = min(np.linalg.norm(lab[a] - lab[b]) for a in (N_SEGMENTS + 1, N_SEGMENTS + 2) for b in lab if a != b)
    assert closest > 30.0, closest


def test_an_empty_or_unknown_finding_gets_no_segment(flagged, tmp_path):
    source, (infarct, regions) = flagged["source"], make_masks()
    empty = {HAEM: np.zeros_like(infarct), OLD: flagged["findings"][OLD]}
    seg = hd.seg.segread(write_seg(source, infarct, regions, flagged["result"], tmp_path / "seg.dcm", empty))
    assert seg.number_of_segments == N_SEGMENTS + 1
    assert seg.get_segment_description(N_SEGMENTS + 1).segment_label == "Suspected old infarct"
    with pytest.raises(InputError, match="no SEG segment for the finding"):
        build_segmentation(source, infarct, regions, findings={"infarct_outside_mca": infarct})


def test_the_sr_measures_each_located_finding_and_points_at_its_segment(flagged):
    summary = read_sr_summary(flagged["sr"])
    assert summary["findings"] == {HAEM: 1.2, OLD: 3.4}
    assert summary["infarct_volume_ml"] == flagged["result"]["infarct_volume_ml"]  # the old infarct is not the acute one
    refs = [item.ReferencedSOPSequence[0] for item in _walk_sr(pydicom.dcmread(flagged["sr"])) if item.ValueType == "IMAGE"
            and item.ConceptNameCodeSequence[0].CodeMeaning == "Referenced Segment"]
    assert sorted(int(r.ReferencedSegmentNumber) for r in refs) == list(range(1, N_SEGMENTS + 3))
    # a flag whose finding has no segment (not located on the slices) is measured all the same
    result = dict(flagged["result"], flag_details={HAEM: {"volume_ml": 0.4}}, flags=[HAEM])
    assert read_sr_summary(write_sr(flagged["source"], result, flagged["out"] / "sr_unlocated.dcm"))["findings"] == {HAEM: 0.4}


def test_each_located_finding_has_a_key_image_where_it_is_largest_and_a_ring_where_it_crosses_a_level(flagged):
    keys = flagged["keys"]
    assert list(keys) == ["BG", "SG", HAEM, OLD, OUTSIDE]
    assert keys[HAEM]["slice"] == BG_SLICE + 1 and keys[OLD]["slice"] == SG_SLICE and keys[OUTSIDE]["slice"] == 0
    assert Path(keys[OUTSIDE]["png"]).name == "key_outside_mca.png"
    assert (np.asarray(Image.open(keys[OUTSIDE]["png"]).convert("RGB")) == (255, 0, 0)).all(axis=2).sum() > 20  # its red ring
    assert Path(keys[HAEM]["png"]).name == "key_haemorrhage.png" and Path(keys[OLD]["dcm"]).name == "key_old_infarct.dcm"

    def has(png, rgb):
        return bool((np.asarray(Image.open(png).convert("RGB")) == rgb).all(axis=2).sum() > 20)

    from aspects.labels import FINDING_COLOURS
    assert has(keys[HAEM]["png"], FINDING_COLOURS[HAEM]) and not has(keys[HAEM]["png"], FINDING_COLOURS[OLD])
    assert has(keys[OLD]["png"], FINDING_COLOURS[OLD])
    assert has(keys["BG"]["png"], FINDING_COLOURS[HAEM])  # the blood crosses the BG slice too
    assert has(keys["SG"]["png"], FINDING_COLOURS[OLD]) and not has(keys["SG"]["png"], FINDING_COLOURS[HAEM])
    # the finding's own picture names it, and outlines no level's regions
    ds = pydicom.dcmread(keys[HAEM]["dcm"])
    assert ds.DerivationDescription.startswith("Suspected haemorrhage key image")
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == flagged["source"][BG_SLICE + 1].SOPInstanceUID
    picture = np.asarray(Image.open(keys[HAEM]["png"]).convert("RGB"))
    assert not any((picture == REGION_COLOURS[c]).all(axis=2).sum() > 40 for c in REGION_CODES)
    # the KOS flags all five
    kos = pydicom.dcmread(flagged["kos"])
    listed = {i.ReferencedSOPInstanceUID for s in kos.CurrentRequestedProcedureEvidenceSequence
              for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert {str(pydicom.dcmread(k["dcm"]).SOPInstanceUID) for k in keys.values()} <= listed


@pytest.mark.external
@needs_dciodvfy
@pytest.mark.parametrize("rel", ["dicom/seg.dcm", "dicom/sr.dcm", "dicom/key_haemorrhage.dcm", "dicom/kos.dcm"])
def test_dciodvfy_accepts_the_outputs_with_located_findings(flagged, rel):
    run = subprocess.run(["dciodvfy", str(flagged["out"] / rel)], capture_output=True, text=True)
    errors = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors


@needs_dcmqi
def test_dcmqi_reads_the_located_findings_as_written(flagged, tmp_path):
    meta, images = read_seg(flagged["seg"], tmp_path)
    labels = {a["labelID"]: a["SegmentLabel"] for attrs in meta["segmentAttributes"] for a in attrs}
    assert labels[N_SEGMENTS + 1] == "Suspected haemorrhage" and labels[N_SEGMENTS + 2] == "Suspected old infarct"
    reference = on_grid(np.zeros(flagged["findings"][HAEM].shape, np.uint8), series_grid(flagged["source"]))
    for number, name in ((N_SEGMENTS + 1, HAEM), (N_SEGMENTS + 2, OLD)):
        assert np.array_equal(mask_on(images[number], number, reference), flagged["findings"][name]), name


def test_the_findings_label_map_puts_the_haemorrhage_first(flagged):
    from aspects.assess import ScoredStudy
    (infarct, regions), both = make_masks(), dict(flagged["findings"])
    both[OLD] = both[OLD] | both[HAEM]  # overlapping: the haemorrhage is what the reader must see
    scored = ScoredStudy(flagged["result"], infarct, regions, tuple(flagged["source"]), findings=both)
    labels = scored.findings_labels()
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[both[HAEM]] == 1).all() and (labels[both[OLD] & ~both[HAEM]] == 2).all()
    assert sitk.GetArrayFromImage(scored.mask_images()["findings"]).tolist() == labels.tolist()
