"""The synthetic NCCT studies: determinism, truth/DICOM agreement, readability, controls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.dicom_geometry import sort_slices
from aspects_research.phantoms import (INVOLVEMENT_FRACTION, KINDS, THICKNESSES, PhantomOptions, involved_regions, make_phantom,
                              resolve_params)
from aspects.scoring import DEFAULT_INVOLVEMENT_FRACTION
from tests.support.phantom_cases import make_case

ROOT = Path(__file__).resolve().parents[1]
TRUTH_KEYS = {"kind", "affected_side", "aspects", "involved", "infarct_volume_ml", "infarct_outside_mca_ml", "hu_drop",
              "slice_thickness_mm", "seed"}


def read_series(case: Path) -> Tuple[List[pydicom.Dataset], np.ndarray]:
    """Sorted datasets and the HU volume (z, y, x) built with pydicom."""
    ds = sort_slices([pydicom.dcmread(p) for p in sorted((case / "dicom").glob("*.dcm"))])
    hu = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])
    return ds, hu


def read_truth(case: Path, name: str) -> sitk.Image:
    return sitk.ReadImage(str(case / "truth" / f"{name}.nii.gz"))


def sitk_series(case: Path) -> Tuple[List[str], sitk.Image]:
    d = str(case / "dicom")
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(d)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(d, ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return list(ids), reader.Execute()


def test_involvement_threshold_is_the_scorers():
    assert INVOLVEMENT_FRACTION == DEFAULT_INVOLVEMENT_FRACTION == 0.10


@pytest.mark.slow
def test_same_seed_same_case_and_options_do_not_shift_other_choices():
    opts = PhantomOptions(kind="acute", thickness=5.0, matrix=128)
    a, b = make_phantom(11, opts), make_phantom(11, opts)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.infarct, b.infarct) and np.array_equal(a.regions, b.regions)
    assert a.truth == b.truth
    c = make_phantom(12, opts)
    assert a.hu.shape != c.hu.shape or not np.array_equal(a.hu, c.hu)
    # Fixing the kind keeps the pose, thickness and noise of the seed.
    p_acute, p_normal = resolve_params(11, PhantomOptions(kind="acute")), resolve_params(11, PhantomOptions(kind="normal"))
    assert (p_acute.yaw_deg, p_acute.scale, p_acute.noise_hu, p_acute.thickness) == \
        (p_normal.yaw_deg, p_normal.scale, p_normal.noise_hu, p_normal.thickness)


def test_random_draws_stay_in_the_documented_ranges():
    ps = [resolve_params(s) for s in range(300)]
    assert all(abs(p.yaw_deg) <= 15 and abs(p.roll_deg) <= 15 and abs(p.pitch_deg) <= 10 for p in ps)
    assert all(0.9 <= p.scale <= 1.1 and 3 <= p.noise_hu <= 6 and p.tilt_deg == 0 for p in ps)
    assert all(2 <= p.hu_drop <= 12 for p in ps if p.kind == "acute")
    assert all(p.hu_drop == 0 for p in ps if p.kind != "acute")
    assert all(5 <= p.lesion_hu <= 15 for p in ps if p.kind == "old_infarct")
    assert all(50 <= p.lesion_hu <= 80 for p in ps if p.kind == "haemorrhage")
    assert {p.kind for p in ps} == set(KINDS) and {p.thickness for p in ps} == set(THICKNESSES)
    assert {p.side for p in ps if p.kind == "acute"} == {"left", "right"}
    assert 0.6 < sum(p.kind == "acute" for p in ps) / len(ps) < 0.8
    fixed = resolve_params(5, PhantomOptions(kind="acute", thickness=2.5, hu_drop=4.0, pattern="deep", side="left",
                                             tilt_deg=5.0, noise_hu=3.5, deform=False, pose=False))
    assert (fixed.kind, fixed.thickness, fixed.hu_drop, fixed.pattern, fixed.side, fixed.tilt_deg, fixed.noise_hu,
            fixed.deform_mm, fixed.yaw_deg, fixed.scale) == ("acute", 2.5, 4.0, "deep", "left", 5.0, 3.5, 0.0, 0.0, 1.0)


@pytest.mark.slow
def test_noise_has_the_requested_standard_deviation():
    quiet = make_phantom(13, PhantomOptions(kind="normal", thickness=5.0, matrix=128, noise_hu=0.0))
    noisy = make_phantom(13, PhantomOptions(kind="normal", thickness=5.0, matrix=128, noise_hu=5.0))
    assert float((noisy.hu - quiet.hu).std()) == pytest.approx(5.0, rel=0.05)


@pytest.mark.slow
def test_written_case_is_deterministic(tmp_path):
    a = make_case(tmp_path / "a", 21, matrix=128)
    b = make_case(tmp_path / "b", 21, matrix=128)
    fa, fb = sorted((a / "dicom").glob("*.dcm")), sorted((b / "dicom").glob("*.dcm"))
    assert [f.name for f in fa] == [f.name for f in fb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert (a / "truth.json").read_text() == (b / "truth.json").read_text()


@pytest.mark.slow
def test_truth_schema_and_score(phantom_case):
    case = phantom_case(3, kind="acute", pattern="cortical_bg", hu_drop=8.0, side="left")
    truth = json.loads((case / "truth.json").read_text())
    assert set(truth) == TRUTH_KEYS
    assert truth["kind"] == "acute" and truth["affected_side"] == "left" and truth["seed"] == 3
    assert truth["hu_drop"] == 8.0 and truth["slice_thickness_mm"] == 5.0
    for side in ("left", "right"):
        assert truth["aspects"][side] == 10 - len(truth["involved"][side])
    assert truth["involved"]["right"] == [] and len(truth["involved"]["left"]) >= 2
    # The truth files give the same involvement and volume as truth.json.
    inf, reg = read_truth(case, "infarct"), read_truth(case, "regions")
    inf_a, reg_a = sitk.GetArrayFromImage(inf), sitk.GetArrayFromImage(reg)
    assert involved_regions(inf_a, reg_a) == truth["involved"]
    ml = inf_a.sum() * np.prod(inf.GetSpacing()) / 1000.0
    assert ml == pytest.approx(truth["infarct_volume_ml"], rel=1e-3) and ml > 5
    assert set(np.unique(reg_a)) == set(range(21))


@pytest.mark.slow
def test_infarct_is_darker_by_hu_drop_on_the_dicom_grid(phantom_case):
    kw = dict(thickness=2.5, pattern="whole_mca", side="right", matrix=256)
    acute = phantom_case(5, kind="acute", hu_drop=6.0, **kw)
    normal = phantom_case(5, kind="normal", **kw)
    ds_a, hu_a = read_series(acute)
    _, hu_n = read_series(normal)
    mask_img = read_truth(acute, "infarct")
    ids, vol = sitk_series(acute)
    # Truth and DICOM share the grid: same size, origin, spacing, direction.
    assert mask_img.GetSize() == vol.GetSize()
    assert np.allclose(mask_img.GetOrigin(), vol.GetOrigin(), atol=1e-3)
    assert np.allclose(mask_img.GetSpacing(), vol.GetSpacing(), atol=1e-4)
    assert np.allclose(mask_img.GetDirection(), vol.GetDirection(), atol=1e-5)
    assert np.allclose(mask_img.GetOrigin(), np.asarray(ds_a[0].ImagePositionPatient, float), atol=1e-3)
    mask = sitk.GetArrayFromImage(mask_img).astype(bool)
    assert np.array_equal(sitk.GetArrayFromImage(vol), hu_a)  # both readers, same HU, same order
    drop = float((hu_n - hu_a)[mask].mean())
    assert drop == pytest.approx(6.0, abs=1.0)
    far = ~ndi.binary_dilation(mask, iterations=4)
    assert abs(float((hu_n - hu_a)[far].mean())) < 0.05  # nothing changes away from the lesion


@pytest.mark.slow
def test_every_file_reads_and_the_series_is_one_volume(phantom_case):
    cases = [phantom_case(3, kind="acute", pattern="cortical_bg", hu_drop=8.0, side="left"),
             phantom_case(8, kind="normal", thickness=1.0, matrix=128)]
    studies = set()
    for case in cases:
        files = sorted((case / "dicom").glob("*.dcm"))
        ds = [pydicom.dcmread(f) for f in files]
        for d in ds:
            assert d.SOPClassUID == pydicom.uid.CTImageStorage and d.Modality == "CT"
            assert list(d.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"] and d.BodyPartExamined == "HEAD"
            assert "ContrastBolusAgent" not in d and float(d.RescaleIntercept) == -1024.0
            assert d.pixel_array.shape == (d.Rows, d.Columns)
        assert len({d.SOPInstanceUID for d in ds}) == len(ds)
        assert len({d.SeriesInstanceUID for d in ds}) == len({d.StudyInstanceUID for d in ds}) == 1
        assert len({d.FrameOfReferenceUID for d in ds}) == 1
        assert sorted(int(d.InstanceNumber) for d in ds) == list(range(1, len(ds) + 1))
        studies.add(ds[0].StudyInstanceUID)
        ids, vol = sitk_series(case)
        assert len(ids) == 1 and vol.GetSize()[2] == len(files)
        assert vol.GetSpacing()[2] == pytest.approx(float(ds[0].SliceThickness), rel=1e-4)
    assert len(studies) == 2


@pytest.mark.slow
def test_full_size_head_in_the_field_of_view(phantom_case):
    case = phantom_case(30, kind="acute", thickness=5.0, matrix=512)
    ds, hu = read_series(case)
    d = ds[0]
    assert (d.Rows, d.Columns) == (512, 512) and 0.4 <= float(d.PixelSpacing[0]) <= 0.5
    assert hu.max() > 1000 and (hu > 700).sum() > 10000  # skull with cortical bone
    head = hu > -300
    assert not head[:, [0, -1], :].any() and not head[:, :, [0, -1]].any()  # head inside the FOV
    assert np.median(hu[:, 250:262, 5:15]) < -900  # air around it
    regions = sitk.GetArrayFromImage(read_truth(case, "regions"))
    brain_slices = np.nonzero((regions > 0).any(axis=(1, 2)))[0]
    assert brain_slices.min() > 0 and brain_slices.max() < len(ds) - 1  # whole brain covered
    assert hu[-1].max() < 300 and (hu[-5:] > 700).any()  # top slice just above the skull (axis 0 goes up)
    assert len(np.unique(regions)) == 21
    noise = hu[:, 250:262, 5:15][hu[:, 250:262, 5:15] > -1010]
    assert 2.0 < float(noise.std()) < 8.0


@pytest.mark.slow
def test_controls(phantom_case):
    normal = phantom_case(40, kind="normal", matrix=128)
    t = json.loads((normal / "truth.json").read_text())
    assert t["aspects"] == {"left": 10, "right": 10} and t["affected_side"] is None and t["infarct_volume_ml"] == 0
    assert not sitk.GetArrayFromImage(read_truth(normal, "infarct")).any()

    bleed = phantom_case(41, kind="haemorrhage", thickness=2.5)
    t = json.loads((bleed / "truth.json").read_text())
    assert t["kind"] == "haemorrhage" and t["aspects"] == {"left": 10, "right": 10} and t["involved"] == {"left": [], "right": []}
    _, hu = read_series(bleed)
    core = ndi.binary_erosion(sitk.GetArrayFromImage(read_truth(bleed, "haemorrhage")).astype(bool), iterations=1)
    assert core.sum() > 20 and 50 <= float(np.median(hu[core])) <= 80

    old = phantom_case(42, kind="old_infarct", thickness=2.5, pattern="M2")
    t = json.loads((old / "truth.json").read_text())
    assert t["kind"] == "old_infarct" and t["aspects"] == {"left": 10, "right": 10} and t["involved"] == {"left": [], "right": []}
    assert not sitk.GetArrayFromImage(read_truth(old, "infarct")).any()
    _, hu = read_series(old)
    core = ndi.binary_erosion(sitk.GetArrayFromImage(read_truth(old, "old_infarct")).astype(bool), iterations=1)
    assert core.sum() > 20 and 5 <= float(np.median(hu[core])) <= 15


@pytest.mark.slow
def test_gantry_tilt_geometry(phantom_case):
    case = phantom_case(50, kind="normal", tilt_deg=12.0, matrix=128)
    ds = sort_slices([pydicom.dcmread(p) for p in (case / "dicom").glob("*.dcm")])
    assert float(ds[0].GantryDetectorTilt) == 12.0
    col = np.asarray(ds[0].ImageOrientationPatient[3:], float)
    assert col[2] == pytest.approx(np.sin(np.radians(12.0)), abs=1e-5)
    steps = np.diff([np.asarray(d.ImagePositionPatient, float) for d in ds], axis=0)
    assert np.allclose(steps[:, :2], 0, atol=1e-3)  # the table moves along z: sheared volume
    ids, vol = sitk_series(case)  # the truth has the geometry SimpleITK reads (index-aligned)
    truth = read_truth(case, "regions")
    assert len(ids) == 1 and truth.GetSize() == vol.GetSize()
    assert np.allclose(truth.GetOrigin(), vol.GetOrigin(), atol=1e-3)
    assert np.allclose(truth.GetSpacing(), vol.GetSpacing(), atol=1e-4)
    assert np.allclose(truth.GetDirection(), vol.GetDirection(), atol=1e-5)


@pytest.mark.slow
def test_cli_makes_cases_and_rejects_bad_options(tmp_path, capsys):
    from aspects_research.tools import make_phantoms as cli
    out = tmp_path / "out"
    assert cli.main(["--out", str(out), "--count", "2", "--seed", "60", "--thickness", "5", "--kind", "acute",
                     "--matrix", "128", "--preview"]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] phantom_000060" in printed and "[2/2] phantom_000061" in printed and "2 cases in" in printed
    assert sorted(p.name for p in out.iterdir()) == ["phantom_000060", "phantom_000061"]
    assert (out / "phantom_000061" / "preview.png").stat().st_size > 1000
    n_files = len(list((out / "phantom_000060" / "dicom").glob("*.dcm")))
    # Re-running into the same folder replaces the case (no stale slices of a longer series).
    assert cli.main(["--out", str(out), "--seed", "60", "--thickness", "2.5", "--kind", "normal", "--matrix", "128"]) == 0
    assert len(list((out / "phantom_000060" / "dicom").glob("*.dcm"))) > n_files
    assert json.loads((out / "phantom_000060" / "truth.json").read_text())["kind"] == "normal"
    (out / "phantom_000099").mkdir()
    (out / "phantom_000099" / "notes.txt").write_text("mine")
    assert cli.main(["--out", str(out), "--seed", "99", "--matrix", "128"]) == 2  # not ours: left alone
    assert (out / "phantom_000099" / "notes.txt").read_text() == "mine"
    capsys.readouterr()
    for bad in (["--thickness", "50"], ["--count", "0"], ["--pattern", "M1", "--kind", "normal", "--hu-drop", "-3"]):
        assert cli.main(["--out", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error[2]: ") and len(err.strip().splitlines()) == 1
    assert cli.main(["--out", str(out), "--atlas", str(tmp_path / "no_atlas")]) == 7  # missing atlas: exit 7
    err = capsys.readouterr().err
    assert err.startswith("error[7]: atlas not found") and len(err.strip().splitlines()) == 1
    # The real command line: argparse errors are one line too.
    r = subprocess.run([sys.executable, "-m", "aspects_research.tools.make_phantoms", "--out", str(out), "--kind", "chronic"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error[2]: ") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["aca", "pca", "thalamus", "cerebellum"])
def test_infarcts_outside_the_mca_territory_keep_aspects_10(pattern):
    """Negative controls: the infarct is real (in the truth mask, darker in the pixels) but lies in
    another arterial territory, away from every ASPECTS region, so the truth ASPECTS is 10 / 10."""
    from aspects.atlas import outside_mca
    from aspects_research.phantoms import default_anatomy, TERRITORY_PATTERNS

    opts = dict(kind="acute", pattern=pattern, thickness=5.0, hu_drop=8.0, matrix=128, side="right")
    ph = make_phantom(61, PhantomOptions(**opts))
    normal = make_phantom(61, PhantomOptions(**{**opts, "kind": "normal"}))
    t = ph.truth
    assert t["aspects"] == {"left": 10, "right": 10} and t["involved"] == {"left": [], "right": []}
    assert t["infarct_volume_ml"] > 2.0
    assert t["infarct_outside_mca_ml"] >= 0.9 * t["infarct_volume_ml"]
    assert np.count_nonzero(ph.regions[ph.infarct > 0]) <= 0.02 * np.count_nonzero(ph.infarct)
    drop = float((normal.hu - ph.hu)[ph.infarct > 0].mean())
    assert 6.0 < drop < 10.0
    # the painted territory is the pattern's own (anatomy space): right side, outside the MCA
    anat = default_anatomy()
    assert TERRITORY_PATTERNS[pattern] and outside_mca(anat.territories).any()
