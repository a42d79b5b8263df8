"""MAP packaging: app.yaml through the packager's own reader, the packaging run up to the image
build, the models layout, and the app run exactly as the MAP entrypoint runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from holoscan_cli.packager.config_reader import ApplicationConfiguration

from tests.phantom_fixtures import make_case, phantom_root  # noqa: F401  (fixture import)

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO.parent / "shared" / "data" / "holoscan-cli-4.2.0" / "artifacts.json"


def _gib(q: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", str(q))
    assert m, f"not a Kubernetes-style quantity: {q!r}"
    return float(m.group(1)) / (1024 if m.group(2) == "Mi" else 1)


def test_app_yaml_is_accepted_by_the_packagers_reader():
    cfg = ApplicationConfiguration()
    cfg.read(REPO / "app.yaml")  # raises on anything the packager would refuse
    app, res = cfg._config["application"], cfg._config["resources"]
    assert cfg.title() and str(app["version"])
    assert app["input-formats"] == ["file"] and app["output-formats"] == ["file"]
    assert res["gpu"] == 1 and res["cpu"] >= 1
    assert _gib(res["memory"]) >= 4 and _gib(res["sharedMemory"]) >= 1 and _gib(res["gpuMemory"]) >= 2


def test_models_folder_has_one_torchscript_file_per_model():
    """The SDK's model repository rule: models/<name>/<name>.ts, nothing else in the folder."""
    folders = [d for d in (REPO / "models").iterdir() if d.is_dir()] if (REPO / "models").is_dir() else []
    for d in folders:
        assert [p.name for p in d.iterdir()] == [f"{d.name}.ts"], d
    assert not [p for p in (REPO / "models").glob("*") if p.is_file() and p.name != ".gitkeep"]


def _buildx_available() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "buildx", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not ARTIFACTS.is_file(), reason=f"no offline artifact manifest at {ARTIFACTS}")
def test_package_map_writes_the_build_context_and_stops_at_docker_buildx(tmp_path):
    if _buildx_available():
        pytest.skip("docker buildx is available: tools/package_map.sh builds the real image (minutes, network)")
    stage = tmp_path / "stage"
    r = subprocess.run(["bash", str(REPO / "tools" / "package_map.sh"), "-t", "aspects:test", "--stage", str(stage),
                        "-s", str(ARTIFACTS)], capture_output=True, text=True, cwd=REPO, timeout=300)
    out = r.stdout + r.stderr
    failure = [ln for ln in out.splitlines() if "buildx" in ln]
    print("packager stopped at:", *failure[-3:], sep="\n  ")
    assert r.returncode != 0
    # The packager got as far as the build context: manifests, requirements and the Dockerfile ...
    assert "Begin app.json" in out and "End Dockerfile" in out
    app_json = json.loads(re.search(r"Begin app.json =+\n(.*?)\n=+ End app.json", out, re.S).group(1))
    assert app_json["command"] == '["python3", "/opt/holoscan/app/app.py"]'
    pkg_json = json.loads(re.search(r"Begin pkg.json =+\n(.*?)\n=+ End pkg.json", out, re.S).group(1))
    assert pkg_json["resources"]["gpu"] == 1
    # ... and failed only because docker has no buildx here.
    assert "docker buildx" in out and "Error packaging application" in out
    # The staging folder holds the app and nothing of the checkout's clutter.
    staged = sorted(p.name for p in (stage / "app").iterdir())
    assert staged == ["app.py", "aspects", "atlas", "config", "operators", "requirements.txt"]
    assert not list(stage.glob("**/__pycache__")) and not list(stage.glob("**/.venv"))
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    assert size < 200e6, f"staged {size / 1e6:.0f} MB"
    reqs = (stage / "app" / "requirements.txt").read_text()
    assert "pytest" not in reqs and "holoscan-cli" not in reqs and "dcmqi" not in reqs and "monai==" in reqs


def test_app_runs_as_the_map_entrypoint(tmp_path, phantom_root):  # noqa: F811
    """HOLOSCAN_* variables, no arguments, cwd = the staged app folder, only staged code on the path."""
    stage = tmp_path / "stage"
    subprocess.run(["bash", str(REPO / "tools" / "package_map.sh"), "--stage", str(stage), "--stage-only"],
                   check=True, capture_output=True, cwd=REPO, timeout=120)
    stage_app = stage / "app"
    case = make_case(phantom_root, 5, kind="acute", thickness=5.0)
    out = tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASPECTS_ATLAS_DIR")}
    env.update(HOLOSCAN_INPUT_PATH=str(case / "dicom"), HOLOSCAN_OUTPUT_PATH=str(out),
               HOLOSCAN_MODEL_PATH=str(REPO / "models"))
    r = subprocess.run([sys.executable, str(stage_app / "app.py")], cwd=stage_app, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "aspects.json").read_text())
    study = dcmread(next((case / "dicom").glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    assert result["study_instance_uid"] == study
    assert set(result["aspects"]) == {"left", "right"}
    names = sorted(p.name for p in (out / "dicom").glob("*.dcm"))
    assert names == ["key_bg.dcm", "key_sg.dcm", "kos.dcm", "seg.dcm", "sr.dcm"]
