"""The trained models shipped in models/: the files the model cards describe, loadable without the
training code, and segmenting a held-out synthetic study (seed outside the training seeds)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk


ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ("aspects_regions", "infarct_seg")


def _metadata(bundle: str) -> dict:
    return json.loads((ROOT / "train" / bundle / "configs" / "metadata.json").read_text())


def _shipped() -> list:
    return [b for b in BUNDLES if _metadata(b)["training_data"].get("shipped")]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_and_models_folder_agree(bundle: str):
    """A model card that says 'shipped' names the exact file in models/; one that does not, has none."""
    meta = _metadata(bundle)["training_data"]
    path = ROOT / "models" / bundle / f"{bundle}.ts"
    if meta.get("shipped"):
        assert path.is_file(), f"{bundle}: metadata says shipped but {path} is missing"
        assert meta["shipped_file"] == f"models/{bundle}/{bundle}.ts"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["shipped_sha256"], \
            f"{path} is not the model its card measured (sha256 differs): update the card or the file"
    else:
        assert not path.exists(), f"{path} exists but the {bundle} card does not claim it"


def test_infarct_seg_is_shipped():
    assert "infarct_seg" in _shipped()


# A fresh interpreter: numpy, torch and the app's inference/model_io only (no MONAI, no train/).
_CLEAN = r"""
import sys, json, numpy as np, SimpleITK as sitk
from pathlib import Path
from aspects.inference import load_torchscript, predict_labels
from aspects.model_io import from_model_layout, infarct_input
ts, image, contra, truth = sys.argv[1:5]
x = infarct_input(sitk.GetArrayFromImage(sitk.ReadImage(image)), sitk.GetArrayFromImage(sitk.ReadImage(contra)))
labels, _ = predict_labels(load_torchscript(Path(ts), "cpu"), x, "cpu")
pred = from_model_layout(labels) == 1
ref = sitk.GetArrayFromImage(sitk.ReadImage(truth)) > 0
dice = 2 * (pred & ref).sum() / max(1, pred.sum() + ref.sum())
bad = [m for m in sys.modules if m == "monai" or m.startswith(("monai.", "train", "scripts", "ignite"))]
print(json.dumps({"dice": float(dice), "pred_ml": float(pred.sum() * 8e-3), "truth_ml": float(ref.sum() * 8e-3), "imported": bad}))
"""


@pytest.mark.slow
def test_shipped_infarct_model_segments_a_held_out_study(phantom_case, tmp_path):
    from aspects.asymmetry import contralateral
    from aspects.atlas import load_atlas
    from aspects.pipeline import preprocess_series
    from aspects.segmentation import declared_second_channel
    from aspects.preprocess import to_aligned
    from aspects.series import read_study

    # Seed 3001: outside the training (1..64), validation (500..) and test (1000..) seeds.
    case = phantom_case(3001, kind="acute", thickness=5.0, hu_drop=8.0, pattern="M2")
    pre = preprocess_series(read_study(case / "dicom"), load_atlas())
    image, contra, truth = tmp_path / "image.nii.gz", tmp_path / "contra.nii.gz", tmp_path / "truth.nii.gz"
    sitk.WriteImage(pre.aligned, str(image))
    # channel 1 as the model declares it and the app builds it: the plain mirror, or the mirror
    # deformed onto the image ("contra")
    hu = sitk.GetArrayFromImage(pre.aligned)
    if declared_second_channel(ROOT / "models" / "infarct_seg" / "infarct_seg.ts") == "contra":
        counterpart, _ = contralateral(hu, sitk.GetArrayFromImage(pre.brain_mask) > 0, pre.aligned)
    else:
        counterpart = np.ascontiguousarray(np.flip(hu, axis=2))
    img = sitk.GetImageFromArray(counterpart)
    img.CopyInformation(pre.aligned)
    sitk.WriteImage(img, str(contra))
    sitk.WriteImage(to_aligned(pre, sitk.ReadImage(str(case / "truth" / "infarct.nii.gz"), sitk.sitkUInt8), label=True),
                    str(truth))
    proc = subprocess.run([sys.executable, "-c", _CLEAN, str(ROOT / "models" / "infarct_seg" / "infarct_seg.ts"),
                           str(image), str(contra), str(truth)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nshipped infarct_seg on seed 3001: {out}")
    assert out["imported"] == []
    assert out["truth_ml"] > 3.0
    # Measured 0.53 / 20 ml for 7.6 ml: on 5 mm slices the model over-segments small infarcts
    # (model card, limitations); a model that misses the lesion or floods the hemisphere fails.
    assert out["dice"] >= 0.45, out
    assert 0.5 * out["truth_ml"] <= out["pred_ml"] <= 3.0 * out["truth_ml"], out
