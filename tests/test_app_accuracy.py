"""ASPECTS agreement with truth on a small seeded synthetic set, through the whole pipeline
(in-process, :mod:`aspects.pipeline`).

The figures for the larger held-out set are in docs/results.md (aspects-evaluate); this test
keeps the app honest in CI: most clear acute cases within 1 point, controls behave.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import INVESALIUS, REAL_DATA, REPO
from tests.support.app_runs import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Seeds outside the shipped models' training (1..64), validation (500..) and test (1000..) sets.
ACUTE_SEEDS = (2041, 2042, 2043, 2044, 2045, 2046)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The output folders of the runs, one per case name."""
    return tmp_path_factory.mktemp("accuracy")


@pytest.fixture(scope="module")
def runs(phantom_case, pipeline, work):
    rng = np.random.default_rng(2026)
    cases = {f"acute{s}": phantom_case(s, kind="acute", thickness=5.0, hu_drop=float(rng.uniform(6, 12)))
             for s in ACUTE_SEEDS}
    cases["normal"] = phantom_case(2047, kind="normal", thickness=5.0)
    cases["haemorrhage"] = phantom_case(2048, kind="haemorrhage", thickness=5.0)
    cases["old_infarct"] = phantom_case(2049, kind="old_infarct", thickness=5.0)
    out = {}
    for name, case in cases.items():
        run = run_pipeline(pipeline, case / "dicom", work / name)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        out[name] = (run.result, json.loads((case / "truth.json").read_text()))
    return out


def test_most_acute_cases_within_one_point(runs):
    diffs = {}
    for name, (result, truth) in runs.items():
        if truth["kind"] != "acute":
            continue
        side = truth["affected_side"]
        diffs[name] = abs(result["aspects"][side] - truth["aspects"][side])
    within1 = sum(d <= 1 for d in diffs.values()) / len(diffs)
    print(f"\nASPECTS |app - truth| on the affected side: {diffs}; within 1 point: {within1:.0%}")
    assert within1 > 0.5, diffs


def test_affected_side_found_in_most_acute_cases(runs):
    acute = [(r, t) for r, t in runs.values() if t["kind"] == "acute"]
    assert sum(r["affected_side"] == t["affected_side"] for r, t in acute) / len(acute) > 0.5


def test_normal_scores_ten(runs):
    result, _ = runs["normal"]
    assert result["aspects"] == {"left": 10, "right": 10}
    assert result["qc"]["white_matter_hu"] >= 25.0  # a head reading as calibrated scanners put tissue
    assert "haemorrhage_suspected" not in result["flags"]


def test_haemorrhage_is_flagged(runs):
    result, _ = runs["haemorrhage"]
    assert "haemorrhage_suspected" in result["flags"]


def test_the_flagged_haemorrhage_is_shown_where_it_is(runs, work, phantom_case):
    """A reader of the flag must be able to find the blood: its SEG segment, its NIfTI label and
    its own key image lie on the phantom's haematoma."""
    import highdicom as hd
    import SimpleITK as sitk
    from PIL import Image

    from aspects.labels import FINDING_COLOURS

    result, _ = runs["haemorrhage"]
    out, case = work / "haemorrhage", phantom_case(2048, kind="haemorrhage", thickness=5.0)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "truth" / "haemorrhage.nii.gz"))) > 0
    shown = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti" / "findings.nii.gz"))) == 1
    assert shown.sum() > 0.1 * truth.sum() and (shown & truth).sum() >= 0.9 * shown.sum(), (shown.sum(), truth.sum())
    number = result["flag_details"]["haemorrhage_suspected"]["seg_segment"]
    seg = hd.seg.segread(out / "dicom" / "seg.dcm")
    assert seg.get_segment_description(number).segment_label == "Suspected haemorrhage"
    assert "dicom/key_haemorrhage.dcm" in result["outputs"]["key_images"]
    picture = np.asarray(Image.open(out / "png" / "key_haemorrhage.png").convert("RGB"))
    assert (picture == FINDING_COLOURS["haemorrhage_suspected"]).all(axis=2).sum() > 20


@pytest.mark.xfail(reason="still fails with infarct model 0.3.0 (short v2 fine-tune, 2026-12-02): false infarct on the old-infarct phantom; issue 13")
def test_old_infarct_is_flagged(runs):
    # Known limitation (README, docs/results.md): the asymmetry baseline may still score the
    # rim of an old infarct; the flag tells the reader to discount it.
    result, truth = runs["old_infarct"]
    assert truth["aspects"] == {"left": 10, "right": 10}
    assert "old_infarct_suspected" in result["flags"]



@pytest.mark.skipif(not INVESALIUS.is_file(), reason="../shared/data/real/invesalius_head_ct not present")
def test_an_old_lacune_on_a_head_that_reads_low_is_old_not_acute(tmp_path, pipeline):
    """The fresh draw's old-infarct control phantom_004113, rebuilt as archived: a 1.9 ml lacune
    on the real InVesalius head, whose white matter reads 21 HU (the templates' 26). Version 0.4.0
    read its rim as 2.9 ml of acute infarct and took a point on the left (the cavity's mirror
    failed a fixed 22 HU tissue test); the mirror test now follows the study's white matter."""
    import SimpleITK as sitk

    from aspects_research.tools import make_phantoms, split_manifest

    root = tmp_path / "cases"
    assert make_phantoms.main(["--generator", "v2", "--contrast-loss", "compress", "--leukoaraiosis", "legacy",
                               "--head-size", "legacy", "--out", str(root), "--split", "test", "--kind", "old_infarct", "--anatomy", "invesalius",
                               "--thickness", "5", "--seed", "4113"]) == 0
    assert split_manifest.main(["--cases", str(root), "--check", str(REPO / "tools" / "splits" / "v2_fresh.json"),
                                "--present-only"]) == 0  # the archived study, to the pixel
    case = root / "phantom_004113"
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert run.result["aspects"] == {"left": 10, "right": 10}
    assert run.result["infarct_volume_ml"] < 1.0
    assert "old_infarct_suspected" in run.result["flags"]
    assert 19.0 < run.result["qc"]["white_matter_hu"] < 23.0  # aspects.json says where its tissue reads
    findings = sitk.ReadImage(str(tmp_path / "out" / "nifti" / "findings.nii.gz"))
    found = sitk.GetArrayFromImage(findings) == 2
    truth = sitk.Resample(sitk.ReadImage(str(case / "truth" / "old_infarct.nii.gz")), findings, sitk.Transform(),
                          sitk.sitkNearestNeighbor, 0)
    assert found.any() and (found & (sitk.GetArrayFromImage(truth) > 0)).sum() >= 0.8 * found.sum()  # the lacune itself


@pytest.mark.skipif(not (REAL_DATA / "scct_mni").is_dir(), reason="../shared/data/real/scct_mni not present")
def test_a_small_adult_head_is_measured_as_drawn_and_not_called_implausible(tmp_path, pipeline):
    """The generator's adult head sizes (docs/data.md, "Head size"): the scct normal study of seed
    40171 is drawn at the bottom of the adult range, 1100 ml of brain as the app measures it. The
    app measures what was drawn (the per-source volumes the draw divides by are right), and the
    QC does not call that head implausible: its affine is ~0.64 of the template's volume, which
    the head-size bound of versions up to 0.5.0 (0.7) flagged."""
    from aspects_research.phantoms import ADULT_BRAIN_ML
    from aspects_research.tools import make_phantoms

    root = tmp_path / "cases"
    assert make_phantoms.main(["--generator", "v2", "--out", str(root), "--split", "test", "--kind", "normal",
                               "--anatomy", "scct", "--thickness", "5", "--seed", "40171"]) == 0
    case = root / "phantom_040171"
    params = json.loads((case / "params.json").read_text())
    assert params["head_size"] == "adult"
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    qc = run.result["qc"]
    assert qc["brain_volume_ml"] == pytest.approx(ADULT_BRAIN_ML[0], rel=0.06)
    assert qc["affine_scale"] < 0.7 and not qc["low_confidence"], qc
    assert run.result["aspects"] == {"left": 10, "right": 10}


# An older brain (docs/data.md, "Atrophy"): the normal studies of tools/make_v2_data.sh atrophy_max,
# rebuilt as archived (tools/splits/v2_atrophy_max.json), at the greatest atrophy the generator
# makes (sulci 1 mm and ventricles 3 mm wider, 7-13 % of the parenchyma).
def _atrophy_max_study(tmp_path, anatomy: str, seed: int):
    from aspects_research.tools import make_phantoms, split_manifest

    root = tmp_path / "cases"
    assert make_phantoms.main(["--generator", "v2", "--contrast-loss", "compress", "--leukoaraiosis", "legacy",
                               "--out", str(root), "--split", "test", "--kind", "normal", "--anatomy", anatomy,
                               "--thickness", "5", "--atrophy-severity", "1", "--seed", str(seed)]) == 0
    assert split_manifest.main(["--cases", str(root), "--check", str(REPO / "tools" / "splits" / "v2_atrophy_max.json"),
                                "--present-only"]) == 0
    return root / f"phantom_{seed:06d}"


@pytest.mark.skipif(not (REAL_DATA / "ge_tilted_head_dicom").is_dir(), reason="../shared/data/real/ge_tilted_head_dicom not present")
def test_an_older_brain_loses_no_point(tmp_path, pipeline):
    """The real GE head (its own sulci) at the greatest atrophy: wider sulci and ventricles on
    both sides are not an infarct, a haemorrhage or a poor registration."""
    case = _atrophy_max_study(tmp_path, "ge", 11008)
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert run.result["aspects"] == {"left": 10, "right": 10}
    assert run.result["infarct_volume_ml"] < 1.0
    assert not run.result["flags"] and not run.result["qc"]["low_confidence"], run.result["flags"]


@pytest.mark.skipif(not INVESALIUS.is_file(), reason="../shared/data/real/invesalius_head_ct not present")
@pytest.mark.xfail(strict=False, reason="known limit (docs/results_v2.md, 'Atrophy'): the enlarged, asymmetric left "
                                        "occipital horn of this head is a compact CSF space whose mirror is tissue, "
                                        "flagged as a possible old infarct")
def test_an_older_brains_asymmetric_ventricle_is_not_an_old_infarct(tmp_path, pipeline):
    case = _atrophy_max_study(tmp_path, "invesalius", 11014)
    run = run_pipeline(pipeline, case / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert run.result["aspects"] == {"left": 10, "right": 10}  # holds today: no point lost
    assert "old_infarct_suspected" not in run.result["flags"]


@pytest.mark.skipif(not (REAL_DATA / "scct_mni").is_dir(), reason="../shared/data/real/scct_mni not present")
def test_a_head_whose_skull_strip_runs_into_the_face_is_registered(tmp_path, pipeline):
    """The elderly draw's phantom_010010 (scct head, the template's faint skull base: the strip runs
    into the face) was registered 1-2 cm off from the centres of mass (QC NCC 0.61, a false
    haemorrhage flag) while the strip's 4 mm opening fed the first pass (sessions 41-42); such a
    head is now registered a second time with pass 1 on the brain opened by 6 mm, kept when it
    reads better (preprocess.opened_brain, REGISTRATION_CUT_VOXELS / REGISTRATION_GAIN)."""
    from aspects_research.tools import make_phantoms, split_manifest

    root = tmp_path / "cases"
    assert make_phantoms.main(["--generator", "v2", "--contrast-loss", "compress", "--leukoaraiosis", "legacy",
                               "--atrophy", "elderly", "--out", str(root), "--split", "test", "--kind", "acute",
                               "--seed", "10010"]) == 0
    assert split_manifest.main(["--cases", str(root), "--check", str(REPO / "tools" / "splits" / "v2_elderly.json"),
                                "--present-only"]) == 0
    run = run_pipeline(pipeline, root / "phantom_010010" / "dicom", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert run.result["qc"]["ncc"] > 0.8 and not run.result["qc"]["low_confidence"], run.result["qc"]
    assert "haemorrhage_suspected" not in run.result["flags"], run.result["flags"]
    assert run.result["aspects"] == {"left": 10, "right": 10}  # truth: a 2.9 ml lesion at 2.7 HU, no region
