"""The device contract (``"cpu"`` | ``"cuda:N"``) from resolution to aspects.json, and the CUDA branch
of the whole app forced on this CPU-only machine (tests/fake_cuda: torch reports one GPU, tensors
stay on the CPU and every CUDA placement is logged)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from aspects.dicom_sr import read_aspects_from_sr
from aspects.errors import EXIT_USAGE, InputError
from aspects.inference import DEVICE_ENV, resolve_device
from aspects.result_json import problems, validate
from tests.support import REPO as ROOT
from tests.support.app_runs import run_app
from tests.support.ct_series import make_ct_series, make_masks, make_result

FAKE_CUDA = ROOT / "tests" / "fake_cuda"


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "test GPU")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_host_resolves_to_cpu(no_gpu, monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == "cpu"
    assert resolve_device("auto") == "cpu"
    assert resolve_device("CPU") == "cpu"


def test_gpu_host_resolves_to_canonical_cuda_index(two_gpus, monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == "cuda:0"  # never the bare "cuda" that aspects.json rejects
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert resolve_device() == "cuda:1"
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device() == "cpu"  # the override forces the CPU on a GPU host


@pytest.mark.parametrize("request_, fixture, words", [
    ("cuda", "no_gpu", "torch sees no CUDA GPU"),
    ("cuda:0", "no_gpu", "torch sees no CUDA GPU"),
    ("cuda:2", "two_gpus", "torch sees 2 CUDA GPU(s)"),
    ("gpu", "no_gpu", "expected auto, cpu, cuda or cuda:N"),
    ("cuda:x", "two_gpus", "expected auto, cpu, cuda or cuda:N"),
])
def test_bad_device_requests_are_usage_errors(request, request_, fixture, words):
    request.getfixturevalue(fixture)
    with pytest.raises(InputError) as err:
        resolve_device(request_)
    assert err.value.code == EXIT_USAGE and words in err.value.one_line()


def test_every_resolved_device_passes_the_aspects_json_validator(two_gpus, monkeypatch):
    source = make_ct_series()
    valid = make_result(source, *make_masks())
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    for req in ("auto", "cpu", "cuda", "cuda:1"):
        assert problems(dict(valid, device=resolve_device(req))) == [], req
    assert problems(dict(valid, device="cuda")) == ["device: expected 'cpu' or 'cuda:N', got 'cuda'"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_cuda_request_on_a_cpu_host_stops_before_the_pipeline(phantom_case, tmp_path):
    case = phantom_case(31, kind="normal", thickness=5.0)
    proc = run_app(case / "dicom", tmp_path / "out", extra_env={DEVICE_ENV: "cuda"})
    assert proc.returncode == EXIT_USAGE
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error[")]
    assert errors == ["error[2]: device 'cuda' requested ($ASPECTS_DEVICE) but torch sees no CUDA GPU"], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "aspects.json").exists()
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] == EXIT_USAGE


@pytest.fixture(scope="module")
def fake_gpu_run(phantom_case, tmp_path_factory):
    if not (ROOT / "models" / "infarct_seg" / "infarct_seg.ts").is_file():
        pytest.skip("no shipped infarct model: the CUDA branch needs a model to run")
    work = tmp_path_factory.mktemp("fake_gpu")
    case = phantom_case(32, kind="acute", thickness=5.0, hu_drop=10.0, side="left", pattern="whole_mca")
    log = work / "cuda_calls.jsonl"
    env = {"ASPECTS_FAKE_CUDA": "1", "ASPECTS_FAKE_CUDA_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(FAKE_CUDA), os.environ.get("PYTHONPATH", "")])}
    proc = run_app(case / "dicom", work / "out", extra_env=env)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"proc": proc, "out": work / "out", "calls": calls, "truth": json.loads((case / "truth.json").read_text())}


@pytest.mark.slow
@pytest.mark.e2e
def test_gpu_host_runs_the_model_on_cuda_and_writes_every_output(fake_gpu_run):
    proc, out = fake_gpu_run["proc"], fake_gpu_run["out"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "aspects.json").read_text())
    validate(result)
    assert result["device"] == "cuda:0"
    assert result["methods"]["infarct"] == "model"
    for rel in ("dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm", "dicom/key_bg.dcm", "dicom/key_sg.dcm",
                "nifti/infarct.nii.gz"):
        assert (out / rel).is_file(), rel
    assert read_aspects_from_sr(out / "dicom" / "sr.dcm") == result["aspects"]
    truth = fake_gpu_run["truth"]
    assert result["affected_side"] == truth["affected_side"]
    assert abs(result["aspects"]["left"] - truth["aspects"]["left"]) <= 2


@pytest.mark.slow
@pytest.mark.e2e
def test_gpu_host_moves_model_and_input_to_cuda_and_releases_memory(fake_gpu_run):
    events = [(c["event"], c.get("device")) for c in fake_gpu_run["calls"]]
    assert ("jit_load", "cuda:0") in events, events  # the model was loaded onto the GPU
    assert ("tensor_to", "cuda:0") in events, events  # and its input moved there
    assert events[-1] == ("empty_cache", None), events  # cached memory returned after the study's model ran
