"""aspects_research.tools.gpu_check: the prepared GPU check runs here on the CPU (the tool itself:
the app's input to the model, the CPU reference, the agreement and timing report), and a GPU request
on this CPU host is a one-line usage error, as on the device pool a missing GPU would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aspects_research.metrics import agreement_dice as dice
from aspects_research.tools.gpu_check import main

REPO = Path(__file__).resolve().parent.parent


def test_dice_of_empty_masks_is_agreement():
    a = np.zeros((4, 4), bool)
    assert dice(a, a) == 1.0
    b = a.copy()
    b[0, 0] = True
    assert dice(a, b) == 0.0 and dice(b, b) == 1.0


@pytest.mark.slow
def test_prepared_study_agrees_with_its_cpu_reference_and_a_gpu_request_on_a_cpu_host_is_exit_2(
        phantom_case, tmp_path, capsys):
    case = phantom_case(7, kind="acute", thickness=5.0)
    inputs = tmp_path / "inputs"
    assert main(["prepare", str(case / "dicom"), "--out", str(inputs), "--models", str(REPO / "models")]) == 0
    saved = np.load(inputs / f"{case.name}.npz")
    assert saved["hu"].shape == saved["brain"].shape == saved["cpu_labels"].shape == (96, 112, 96)
    assert (saved["cpu_labels"] == 1).sum() > 100  # the acute phantom's lesion, as the app's model path sees it
    # a model that declares the deformed mirror as its second channel is prepared with it; one that
    # declares the plain mirror (or nothing) is not
    from aspects.segmentation import declared_second_channel

    contra = declared_second_channel(REPO / "models" / "infarct_seg" / "infarct_seg.ts") == "contra"
    assert ("counterpart" in saved.files) == contra
    if contra:
        assert np.abs(saved["counterpart"] - np.flip(saved["hu"], axis=2)).max() > 1.0  # deformed, not the plain mirror
    out = tmp_path / "cpu.json"
    assert main(["check", "--inputs", str(inputs), "--models", str(REPO / "models"), "--device", "cpu",
                 "--warmup", "0", "--repeats", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["studies"][0]
    assert result["all_agree"] and row["dice_vs_cpu"] == 1.0 and row["voxels_differing"] == 0
    assert row["median_s"] > 0 and row["peak_memory_mb"] is None
    capsys.readouterr()
    assert main(["check", "--inputs", str(inputs), "--models", str(REPO / "models"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error[2]:") and "no CUDA GPU" in err[0]
    # the CUDA branch, forced on this CPU host (tests/fake_cuda: torch reports one GPU, placements stay on the CPU)
    log, out = tmp_path / "cuda_calls.jsonl", tmp_path / "cuda.json"
    env = dict(os.environ, ASPECTS_FAKE_CUDA="1", ASPECTS_FAKE_CUDA_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "fake_cuda"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "aspects_research.tools.gpu_check", "check", "--inputs", str(inputs),
                           "--models", str(REPO / "models"), "--device", "cuda", "--warmup", "1", "--repeats", "2",
                           "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cuda:0" and result["all_agree"]
    assert result["studies"][0]["peak_memory_mb"] == 0.0  # read from torch.cuda, not left out as on the CPU
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert {"jit_load", "tensor_to", "reset_peak_memory_stats"} <= set(events), events


def test_check_without_prepared_studies_is_a_one_line_usage_error(tmp_path, capsys):
    assert main(["check", "--inputs", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no prepared studies" in err[0]


@pytest.mark.slow
def test_a_model_declaring_the_deformed_mirror_is_prepared_with_it(phantom_case, tmp_path):
    from tests.test_segmenters import _save, _SecondIsNotTheMirror

    models = tmp_path / "models"
    _save(_SecondIsNotTheMirror(), models, "infarct_seg", "contra")
    case = phantom_case(7, kind="acute", thickness=5.0)
    assert main(["prepare", str(case / "dicom"), "--out", str(tmp_path / "inputs"), "--models", str(models)]) == 0
    saved = np.load(tmp_path / "inputs" / f"{case.name}.npz")
    assert saved["counterpart"].shape == saved["hu"].shape
    assert np.abs(saved["counterpart"] - np.flip(saved["hu"], axis=2)).max() > 1.0  # deformed, not the plain mirror
    assert main(["check", "--inputs", str(tmp_path / "inputs"), "--models", str(models), "--device", "cpu",
                 "--warmup", "0", "--repeats", "1"]) == 0  # the check feeds the model that same input
