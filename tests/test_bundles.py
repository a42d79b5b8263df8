"""Training bundles: train -> checkpoint -> ckpt_export -> TorchScript in a clean process (CI smoke test),
run as model-zoo bundles run: from another working directory, with only the installed packages
(aspects, aspects_research) importable, not the repository root.

Each bundle trains one epoch on three tiny aligned studies (tests/support/tiny_aligned.py) with the
standard ``python -m monai.bundle`` commands, exports TorchScript, and a fresh interpreter that
never imports MONAI or the training code loads the .ts with the app's loader and runs it on an
aligned volume; its logits must equal the checkpoint's network output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.support.tiny_aligned import write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
from aspects_research.tools import make_datalist  # noqa: E402

from aspects.errors import InputError  # noqa: E402

BUNDLES = {"aspects_regions": 21, "infarct_seg": 2}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder that holds only the project's packages, as site-packages would after ``pip install``:
    ``train`` (the repository root) is not importable from a process whose path is this."""
    site = tmp_path_factory.mktemp("site")
    for package in ("aspects", "aspects_research"):
        (site / package).symlink_to(ROOT / package, target_is_directory=True)
    return site


def _bundle(site: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


# The clean process: only numpy, torch and the app's own modules (aspects.inference / model_io).
_APP_SIDE = r"""
import sys, numpy as np, SimpleITK as sitk
from pathlib import Path
from aspects.inference import load_torchscript, predict_labels
from aspects.model_io import model_input, to_model_layout
ts, image, channels, out = sys.argv[1:5]
hu = sitk.GetArrayFromImage(sitk.ReadImage(image))
x = model_input(to_model_layout(hu), with_mirror=channels == "2")[None]
model = load_torchscript(Path(ts), "cpu")
labels, prob = predict_labels(model, x, "cpu")
import torch
with torch.inference_mode():
    logits = model(torch.from_numpy(x)).numpy()
np.save(out, logits)
bad = [m for m in sys.modules if m == "monai" or m.startswith(("monai.", "train", "scripts", "aspects_research.losses", "ignite"))]
print("imported:", bad)
assert not bad, bad
assert labels.shape == x.shape[2:], labels.shape
"""


@pytest.mark.slow
@pytest.mark.parametrize("bundle", list(BUNDLES))
def test_train_export_and_app_inference(bundle: str, tiny: Path, installed: Path, tmp_path: Path):
    import torch

    configs = ROOT / "train" / bundle / "configs"
    out = tmp_path / "run"
    overrides = ["--dataset_dir", str(tiny), "--output_dir", str(out), "--max_epochs", "1", "--val_interval", "1",
                 "--num_samples", "1", "--cache_rate", "0"]
    if bundle == "infarct_seg":
        overrides += ["--roi_size", "[32,32,-1]", "--tagl_slabs", "[[2,14],[16,30]]"]  # TAGL on in the smoke test
    _bundle(installed, tmp_path, "run", "--config_file", str(configs / "train.json"), *overrides)
    ckpt = out / "models" / "model.pt"
    assert ckpt.is_file() and (out / "curves.png").is_file()
    history = json.loads((out / "curves.json").read_text())
    assert len(history["train_loss"]) == 1 and np.isfinite(history["train_loss"][0])

    ts = tmp_path / f"{bundle}.ts"
    _bundle(installed, tmp_path, "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(ckpt),
            "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "train.json"))

    image = tiny / "images" / "tiny_02.nii.gz"
    channels = "1" if bundle == "aspects_regions" else "2"
    logits_file = tmp_path / "logits.npy"
    env = dict(os.environ, PYTHONPATH=str(installed))
    proc = subprocess.run([sys.executable, "-c", _APP_SIDE, str(ts), str(image), channels, str(logits_file)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = np.load(logits_file)
    assert logits.shape == (1, BUNDLES[bundle], 32, 32, 32)

    # The exported model is the trained checkpoint: same logits as the config's network + weights.
    from monai.bundle import ConfigParser

    from aspects.model_io import model_input, to_model_layout

    parser = ConfigParser()
    parser.read_config(str(configs / "train.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    net.eval()
    hu = to_model_layout(sitk.GetArrayFromImage(sitk.ReadImage(str(image))))
    x = torch.from_numpy(model_input(hu, with_mirror=channels == "2")[None])
    with torch.inference_mode():
        expected = net(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_infarct_bundle_trains_on_the_deformed_mirror_and_the_app_builds_that_input(tiny: Path, installed: Path,
                                                                                    tmp_path: Path, monkeypatch):
    """configs/contra.json: channel 1 is the datalist's ``contra`` volume, augmented with the image
    (the natural-asymmetry augmentation on: ``--asym_prob``);
    the exported model declares it, and the app's input for such a model is what it was trained on."""
    import torch
    from monai.bundle import ConfigParser

    from aspects.model_io import infarct_input
    from aspects.segmentation import declared_second_channel

    configs = ROOT / "train" / "infarct_seg" / "configs"
    both = f"['{configs / 'train.json'}','{configs / 'contra.json'}']"
    out = tmp_path / "run"
    _bundle(installed, tmp_path, "run", "--config_file", both, "--dataset_dir", str(tiny), "--output_dir", str(out),
            "--max_epochs", "1", "--val_interval", "1", "--num_samples", "1", "--cache_rate", "0",
            "--roi_size", "[32,32,-1]", "--tagl_slabs", "[[2,14],[16,30]]", "--asym_prob", "1.0")
    ckpt = out / "models" / "model.pt"
    history = json.loads((out / "curves.json").read_text())
    assert ckpt.is_file() and np.isfinite(history["train_loss"][0])
    meta = json.loads((configs / "metadata.json").read_text())
    meta["network_data_format"]["inputs"]["image"]["channel_def"]["1"] = "contra"
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    ts = tmp_path / "infarct_seg.ts"
    _bundle(installed, tmp_path, "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(ckpt),
            "--meta_file", str(tmp_path / "metadata.json"), "--config_file", str(configs / "train.json"))
    assert declared_second_channel(ts) == "contra"

    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny / "images" / "tiny_02.nii.gz")))
    contra = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny / "contra" / "tiny_02.nii.gz")))
    x = infarct_input(hu, contra)
    parser = ConfigParser()
    parser.read_config(str(configs / "train.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    net.eval()
    exported = torch.jit.load(str(ts)).eval()
    with torch.inference_mode():
        np.testing.assert_allclose(exported(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)

    # the validation transform gives the network exactly that input (channel 1 = contra, not the mirror)
    monkeypatch.syspath_prepend(str(ROOT / "train" / "infarct_seg"))  # the bundle's scripts/, as `monai.bundle run` has it
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "contra.json")])
    parser["dataset_dir"] = str(tiny)
    sample = parser.get_parsed_content("validate#preprocessing")(
        {"image": str(tiny / "images" / "tiny_02.nii.gz"), "contra": str(tiny / "contra" / "tiny_02.nii.gz"),
         "label": str(tiny / "infarct" / "tiny_02.nii.gz")})
    np.testing.assert_allclose(np.asarray(sample["image"]), x[0], atol=1e-6)
    assert "contra" not in sample


@pytest.mark.slow
@pytest.mark.parametrize("bundle", list(BUNDLES))
def test_metadata_verifies_against_the_shipped_schema(bundle: str, installed: Path, tmp_path: Path):
    configs = ROOT / "train" / bundle / "configs"
    _bundle(installed, tmp_path, "verify_metadata", "--meta_file", str(configs / "metadata.json"),
            "--filepath", str(configs / "metadata_schema.json"), timeout=300)
    meta = json.loads((configs / "metadata.json").read_text())
    assert meta["preprocessing"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == BUNDLES[bundle]


@pytest.mark.parametrize("bundle", list(BUNDLES))
def test_inference_config_builds_the_apps_model_input(bundle: str, tiny: Path):
    """The bundle's inference.json prepares an image with aspects.model_io.model_input, the function
    the app's segmenters use: the same array, channel for channel."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from aspects.model_io import model_input, to_model_layout

    configs = ROOT / "train" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "inference.json")])
    image = tiny / "images" / "tiny_02.nii.gz"
    got = np.asarray(Compose(parser.get_parsed_content("infer_load"))({"image": str(image)})["image"])
    hu = to_model_layout(sitk.GetArrayFromImage(sitk.ReadImage(str(image))))
    np.testing.assert_array_equal(got, model_input(hu, with_mirror=bundle == "infarct_seg"))


def test_folder_datalist_pairs_by_name_with_a_fixed_split(tmp_path: Path):
    images, labels = tmp_path / "img", tmp_path / "lab"
    for folder in (images, labels):
        folder.mkdir()
        for i in range(6):
            sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(folder / f"case{i}.nii.gz"))
    out = tmp_path / "lists" / "datalist.json"
    assert make_datalist.main(["--images", str(images), "--labels", str(labels), "--out", str(out), "--val-every", "3"]) == 0
    data = json.loads(out.read_text())
    assert [e["image"] for e in data["validation"]] == ["../img/case2.nii.gz", "../img/case5.nii.gz"]
    assert len(data["training"]) == 4
    assert all(e["label"] == e["image"].replace("img", "lab") for e in data["training"])


def test_folder_datalist_reports_unlabelled_images(tmp_path: Path, capsys):
    images, labels = tmp_path / "img", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(images / "a.nii.gz"))
    code = make_datalist.main(["--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "d.json")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error[2]:") and "no label" in err and "\n" not in err
    with pytest.raises(InputError):
        make_datalist.split_cases(["a", "b"], 1)


def test_tagl_slabs_are_the_aligned_planes_inside_each_level():
    from train.infarct_seg.scripts.levels import slab_indices

    # aligned grid origin z -95.5 mm, 2 mm planes: BG -12..11 mm, SG 12..24 mm (atlas levels.json)
    assert slab_indices(-12.0, 11.0, -95.5, 2.0, 96) == (42, 54)
    assert slab_indices(12.0, 24.0, -95.5, 2.0, 96) == (54, 60)
    assert slab_indices(-200.0, 500.0, -95.5, 2.0, 96) == (0, 96)
    with pytest.raises(ValueError):
        slab_indices(200.0, 300.0, -95.5, 2.0, 96)


@pytest.mark.slow
def test_phantom_datalists_align_in_parallel_and_resume(tmp_path: Path, capsys):
    from tests.support.phantom_cases import make_case

    train_root, val_root, out = tmp_path / "train", tmp_path / "val", tmp_path / "aligned"
    for seed in (3101, 3102):
        make_case(train_root, seed, kind="acute", thickness=5.0)
    make_case(val_root, 3103, kind="normal", thickness=5.0)
    args = ["--phantoms", str(train_root), "--val-phantoms", str(val_root), "--out", str(out), "--workers", "2"]
    assert make_datalist.main(args) == 0
    regions = json.loads((out / "regions.json").read_text())
    infarct = json.loads((out / "infarct.json").read_text())
    assert len(regions["training"]) == 2 and len(regions["validation"]) == 1
    assert [e["image"] for e in infarct["training"]] == [e["image"] for e in regions["training"]]
    assert [e["slice_mm"] for e in infarct["training"]] == [5.0, 5.0]  # what the lesion synthesis blurs by
    img = sitk.ReadImage(str(out / regions["training"][0]["image"]))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / regions["training"][0]["label"])))
    assert img.GetSize() == (96, 112, 96) and set(np.unique(lab)) <= set(range(21)) and lab.max() == 20
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out / infarct["validation"][0]["label"]))).any()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    capsys.readouterr()
    assert make_datalist.main(args) == 0  # a rerun reuses every aligned case
    assert "3 cases already aligned" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == stamps


@pytest.mark.slow
def test_phantom_datalists_with_contra_carry_the_apps_deformed_mirror(tmp_path: Path):
    from aspects.asymmetry import contralateral
    from tests.support.phantom_cases import make_case

    train_root, out = tmp_path / "train", tmp_path / "aligned"
    make_case(train_root, 3104, kind="acute", thickness=5.0)
    args = ["--phantoms", str(train_root), "--val-phantoms", str(train_root), "--out", str(out), "--contra"]
    assert make_datalist.main(args) == 0
    infarct = json.loads((out / "infarct.json").read_text())
    regions = json.loads((out / "regions.json").read_text())
    entry = infarct["training"][0]
    assert entry["contra"] == "contra/" + Path(entry["image"]).name and "contra" not in regions["training"][0]
    image = sitk.ReadImage(str(out / entry["image"]))
    contra = sitk.ReadImage(str(out / entry["contra"]))
    assert contra.GetSize() == image.GetSize() and contra.GetOrigin() == image.GetOrigin()
    hu = sitk.GetArrayFromImage(image)
    expected, _ = contralateral(hu, hu != 0, image)  # the aligned image is 0 outside the brain
    got = sitk.GetArrayFromImage(contra)
    assert np.abs(got - np.flip(hu, axis=2)).max() > 1.0  # deformed: not the plain mirror
    assert np.abs(got - expected).mean() < 0.5  # the app's counterpart (brain mask approximated here)


@pytest.mark.slow
def test_own_head_cts_are_aligned_as_the_app_aligns_a_study_and_unusable_pairs_are_skipped(tmp_path: Path, capsys):
    """--align: a researcher's head CT as NIfTI (here a synthetic study written with RAS axes, as
    many tools write them) or as a DICOM study folder, with its infarct mask on any grid of the
    same patient space, gives the training case the app's own preprocessing gives; an image not
    in HU, a 4-D series and a mask from elsewhere are skipped with their reasons, the others keep
    their split, and a rerun reuses what was aligned."""
    from aspects.atlas import load_atlas
    from aspects.preprocess import preprocess_series
    from tests.support.phantom_cases import make_case

    case = make_case(tmp_path / "ph", 3105, kind="acute", thickness=5.0, hu_drop=10, pattern="whole_mca")
    images, labels, out = tmp_path / "images", tmp_path / "labels", tmp_path / "aligned"
    images.mkdir()
    labels.mkdir()
    ct = make_datalist.load_study(case / "dicom").volume.image
    mask = sitk.Resample(sitk.ReadImage(str(case / "truth" / "infarct.nii.gz")), ct, sitk.Transform(),
                         sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert sitk.GetArrayViewFromImage(mask).any() and not sitk.GetArrayViewFromImage(mask)[-1].any()
    ras = lambda im: sitk.DICOMOrient(im, "RAS")  # noqa: E731 - the NIfTI habit
    sitk.WriteImage(ras(ct), str(images / "a_nifti.nii.gz"))
    sitk.WriteImage(ras(mask), str(labels / "a_nifti.nii.gz"))
    shutil.copytree(case / "dicom", images / "b_dicom")
    sitk.WriteImage(mask[:, :, :-1], str(labels / "b_dicom.nii.gz"))  # another grid: the top slice left out
    stored = sitk.Clamp(ras(ct), sitk.sitkFloat32, -1024.0, 3071.0) + 1024.0  # unsigned stored values, rescale lost
    sitk.WriteImage(sitk.Cast(stored, sitk.sitkUInt16), str(images / "c_not_hu.nii.gz"))
    sitk.WriteImage(ras(mask), str(labels / "c_not_hu.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([ras(ct), ras(ct)]), str(images / "d_two_volumes.nii.gz"))  # a 4-D series
    sitk.WriteImage(ras(mask), str(labels / "d_two_volumes.nii.gz"))
    elsewhere = sitk.Image(mask)
    elsewhere.SetOrigin([v + 300.0 for v in mask.GetOrigin()])  # another study's space
    sitk.WriteImage(ras(ct), str(images / "e_mask_elsewhere.nii.gz"))
    sitk.WriteImage(elsewhere, str(labels / "e_mask_elsewhere.nii.gz"))

    args = ["--images", str(images), "--labels", str(labels), "--align", "--out", str(out), "--val-every", "3"]
    assert make_datalist.main(args + ["--workers", "2"]) == 0  # a worker's error reaches the parent intact
    printed = capsys.readouterr()
    assert "2 training, 0 validation, 3 skipped" in printed.out
    skipped = json.loads((out / "skipped.json").read_text())
    assert sorted(skipped) == ["c_not_hu", "d_two_volumes", "e_mask_elsewhere"]
    assert "not air" in skipped["c_not_hu"] and "Hounsfield" in skipped["c_not_hu"]
    assert "d_two_volumes.nii.gz is 4-D" in skipped["d_two_volumes"]
    assert "e_mask_elsewhere.nii.gz does not fit e_mask_elsewhere.nii.gz: its lesion reaches" in skipped["e_mask_elsewhere"]
    assert "c_not_hu skipped: error[5]:" in printed.err
    entries = json.loads((out / "infarct.json").read_text())["training"]
    assert entries[0] == {"image": "images/a_nifti.nii.gz", "label": "infarct/a_nifti.nii.gz", "slice_mm": 5.0}
    assert entries[1] == {"image": "images/b_dicom.nii.gz", "label": "infarct/b_dicom.nii.gz", "slice_mm": 5.0}

    # the same study and mask through the app's preprocessing of the DICOM series
    ref = {"image": tmp_path / "ref" / "image.nii.gz", "infarct": tmp_path / "ref" / "infarct.nii.gz"}
    make_datalist.write_aligned(preprocess_series(make_datalist.load_study(case / "dicom"), load_atlas(None)),
                                {"infarct": mask}, ref)
    ref_img = sitk.GetArrayFromImage(sitk.ReadImage(str(ref["image"])))
    want = sitk.GetArrayFromImage(sitk.ReadImage(str(ref["infarct"]))) > 0
    assert want.sum() > 1000
    for entry, min_dice in ((entries[1], 0.999), (entries[0], 0.90)):
        # NIfTI keeps the geometry in float32 (the origin moves by ~1e-5 mm) and the registration turns
        # that into a sub-voxel difference (Dice 0.97 here; room for another CPU's rounding); a flipped
        # or mis-oriented study is far off
        got_img = sitk.GetArrayFromImage(sitk.ReadImage(str(out / entry["image"])))
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / entry["label"]))) > 0
        assert got_img.shape == ref_img.shape == (96, 112, 96) and np.abs(got_img - ref_img).mean() < 0.5
        assert 2 * (got & want).sum() / (got.sum() + want.sum()) >= min_dice

    assert make_datalist.main(args) == 0  # a rerun reuses the aligned cases and skips the others again
    assert "2 cases already aligned" in capsys.readouterr().out
    assert json.loads((out / "infarct.json").read_text())["training"] == entries
