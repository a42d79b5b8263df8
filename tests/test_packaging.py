"""MAP packaging: app.yaml through the packager's own reader, the packaging run up to the image
build (default NVIDIA base and CPU base), the models layout, and the app run exactly as the MAP's
entrypoint script runs it, exit status included. The image itself: tests/test_map_image.py."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

import holoscan_cli
from holoscan_cli.packager.config_reader import ApplicationConfiguration

from aspects import __version__
from aspects.errors import EXIT_NO_DICOM
from tools.map.package import ENTRYPOINT_EDITS, apply_edits

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO.parent / "shared" / "data" / "holoscan-cli-4.2.0" / "artifacts.json"
TEMPLATES = Path(holoscan_cli.__file__).parent / "packager" / "templates"


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


def test_one_version_in_the_package_the_map_manifest_and_the_image_tag():
    """What a PACS shows as the outputs' Software Versions (aspects.__version__), the MAP's
    manifest (app.yaml), the installed package and `make map`'s image tag name one version."""
    cfg = ApplicationConfiguration()
    cfg.read(REPO / "app.yaml")
    assert str(cfg._config["application"]["version"]) == __version__
    assert importlib.metadata.version("aspects-ncct") == __version__
    make = subprocess.run(["make", "-n", "-s", "map-test"], cwd=REPO, capture_output=True, text=True, check=True)
    assert f"MAP_TAG=aspects:{__version__} " in make.stdout


def test_models_folder_has_one_torchscript_file_per_model():
    """The SDK's model repository rule: models/<name>/<name>.ts, nothing else in the folder."""
    folders = [d for d in (REPO / "models").iterdir() if d.is_dir()] if (REPO / "models").is_dir() else []
    for d in folders:
        assert [p.name for p in d.iterdir()] == [f"{d.name}.ts"], d
    assert not [p for p in (REPO / "models").glob("*") if p.is_file() and p.name != ".gitkeep"]


def _docker_without_buildx(tmp_path: Path) -> dict:
    """Environment whose `docker` is a client without the buildx plugin and without a daemon (as
    on CI), whatever this machine has: the packager then stops at the image build."""
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\necho "docker: unknown command: docker $1" >&2\nexit 1\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}


def _dockerfile(out: str) -> str:
    return re.search(r"=+ Begin Dockerfile =+\n(.*?)\n=+ End Dockerfile", out, re.S).group(1)


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(not ARTIFACTS.is_file(), reason=f"no offline artifact manifest at {ARTIFACTS}")
def test_package_map_writes_the_build_context_and_stops_at_docker_buildx(tmp_path):
    stage = tmp_path / "stage"
    r = subprocess.run(["bash", str(REPO / "tools" / "package_map.sh"), "-t", "aspects:test", "--stage", str(stage),
                        "-s", str(ARTIFACTS)], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env=_docker_without_buildx(tmp_path))
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
    # ... on NVIDIA's CUDA base, with the packager's Dockerfile as it is ...
    dockerfile = _dockerfile(out)
    assert "FROM nvcr.io/nvidia/cuda:13.0.0-runtime-ubuntu24.04 AS base" in dockerfile
    assert "cuda-keyring" in dockerfile and 'ENTRYPOINT ["/var/holoscan/tools"]' in dockerfile
    # ... and failed only because docker has no buildx here.
    assert "docker buildx" in out and "Error packaging application" in out
    # The staging folder holds the app and nothing of the checkout's clutter.
    staged = sorted(p.name for p in (stage / "app").iterdir())
    assert staged == ["app.py", "aspects", "atlas", "config", "operators", "requirements.txt"]
    assert not list(stage.glob("**/__pycache__")) and not list(stage.glob("**/.venv"))
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    assert size < 200e6, f"staged {size / 1e6:.0f} MB"
    reqs = (stage / "app" / "requirements.txt").read_text()
    assert "pytest" not in reqs and "dcmqi" not in reqs and "monai==" in reqs and "torch==" in reqs
    assert all("==" in line for line in reqs.splitlines()), reqs  # pins only
    assert "holoscan-cli==4.2.0" in reqs  # the SDK needs it; pinned, or the image gets the newest
    assert "nvidia-cuda-runtime" not in reqs  # the CUDA build of torch pins its own (13.0.x)
    for research in ("matplotlib", "scikit-learn", "nibabel", "pytorch-ignite", "pynetdicom"):
        assert research not in reqs, f"{research} is not a runtime requirement"


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(not ARTIFACTS.is_file(), reason=f"no offline artifact manifest at {ARTIFACTS}")
def test_cpu_base_dockerfile_needs_only_debian_and_pypi(tmp_path):
    """--cpu-base: the packager's Dockerfile without NVIDIA's download and Ubuntu's version pins.
    (Run without --base-image: the packager checks that a given base exists before it renders.)"""
    stage = tmp_path / "stage"
    subprocess.run(["bash", str(REPO / "tools" / "package_map.sh"), "--stage", str(stage), "--stage-only"],
                   check=True, capture_output=True, cwd=REPO, timeout=120)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "map" / "package.py"), "--cpu-base", "--",
                        "package", str(stage / "app" / "app.py"), "-c", str(stage / "app.yaml"), "-t", "aspects:test",
                        "--platform", "x86_64", "-l", "DEBUG", "--source", str(ARTIFACTS), "--no-cache"],
                       capture_output=True, text=True, cwd=REPO, timeout=300, env=_docker_without_buildx(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "docker buildx" in out  # stopped at the build, as above
    dockerfile = _dockerfile(out)
    assert "nvidia.com" not in dockerfile and "cuda-keyring" not in dockerfile
    assert "=${PYTHON_VERSION}" not in dockerfile and "=${PYTHON_PIP_VERSION}" not in dockerfile
    assert "python3-pip \\" in dockerfile and "pip install --no-cache-dir --user -r /tmp/requirements.txt" in dockerfile
    # the SDK by the interpreter's own pip: the upgraded user-level `pip` script ran against
    # Debian's pip module in 2 of 3 builds (docs/deployment.md)
    assert "RUN python3 -m pip install monai-deploy-app-sdk" in dockerfile and "RUN pip install monai-deploy" not in dockerfile
    assert 'ENTRYPOINT ["/var/holoscan/tools"]' in dockerfile


# Imports the shipped code must never need: research, training, plotting and listener packages.
_RUNTIME_ONLY = r"""
import importlib.abc, sys
BLOCKED = ("aspects_research", "matplotlib", "sklearn", "nibabel", "ignite", "pynetdicom", "yaml", "tests", "train")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the runtime imported {name}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import pkgutil, importlib
import app  # noqa: F401  (the app and its operators)
import aspects
for mod in pkgutil.iter_modules(aspects.__path__, "aspects."):
    importlib.import_module(mod.name)
print("ok")
"""


@pytest.mark.slow
def test_the_staged_runtime_imports_no_research_or_listener_package(staged_app):
    """What the MAP ships (app.py, aspects/, operators/) imports without any research, plotting,
    training or listener package: the image's requirements need none of them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", _RUNTIME_ONLY, str(staged_app)], capture_output=True, text=True,
                       cwd=staged_app, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    assert sorted(p.name for p in staged_app.iterdir()) == ["app.py", "aspects", "atlas", "config", "operators",
                                                           "requirements.txt"]


def _entrypoint(tmp_path: Path, stage_app: Path, corrected: bool) -> Path:
    """The image's ENTRYPOINT script (the packager's tools.sh, corrected as tools/map/package.py
    writes it into the build context or as it is) with an app.json that runs the staged app."""
    text = (TEMPLATES / "tools.sh").read_text()
    script = tmp_path / ("tools" if corrected else "tools.orig")
    script.write_text(apply_edits(text, ENTRYPOINT_EDITS, "tools.sh") if corrected else text)
    (tmp_path / "app.json").write_text(json.dumps({"command": json.dumps([sys.executable, str(stage_app / "app.py")])}))
    return script


def _run_entrypoint(script: Path, stage_app: Path, input_dir: Path, out: Path, workdir: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASPECTS_ATLAS_DIR")}
    # What the image's ENV sets (the config is the packager's copy of app.yaml).
    env.update(HOLOSCAN_INPUT_PATH=str(input_dir), HOLOSCAN_OUTPUT_PATH=str(out),
               HOLOSCAN_MODEL_PATH=str(REPO / "models"), HOLOSCAN_CONFIG_PATH=str(stage_app.parent / "app.yaml"),
               HOLOSCAN_APP_MANIFEST_PATH=str(script.parent / "app.json"))
    return subprocess.run(["bash", str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def staged_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stage = tmp_path_factory.mktemp("stage")
    subprocess.run(["bash", str(REPO / "tools" / "package_map.sh"), "--stage", str(stage), "--stage-only"],
                   check=True, capture_output=True, cwd=REPO, timeout=120)
    return stage / "app"


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(shutil.which("jq") is None, reason="the MAP entrypoint script reads app.json with jq (apt-get install jq)")
def test_entrypoint_exits_with_the_apps_exit_code(tmp_path, staged_app):
    """The packager's script exits 0 when the app fails; the corrected one exits with the app's code."""
    empty = tmp_path / "empty"
    empty.mkdir()
    codes = {}
    for corrected in (False, True):
        script = _entrypoint(tmp_path, staged_app, corrected)
        r = _run_entrypoint(script, staged_app, empty, tmp_path / f"out{corrected}", tmp_path)
        assert f"error[{EXIT_NO_DICOM}]:" in r.stderr and f"Application exited with {EXIT_NO_DICOM}" in r.stderr
        codes[corrected] = r.returncode
    assert codes == {False: 0, True: EXIT_NO_DICOM}


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.external
@pytest.mark.skipif(shutil.which("jq") is None, reason="the MAP entrypoint script reads app.json with jq (apt-get install jq)")
def test_app_runs_as_the_map_entrypoint(tmp_path, staged_app, phantom_case):
    """HOLOSCAN_* variables, no arguments, started by the (corrected) entrypoint script from another
    folder (the image's WORKDIR is /var/holoscan), only staged code on the path."""
    case = phantom_case(5, kind="acute", thickness=5.0)
    out = tmp_path / "output"
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    r = _run_entrypoint(_entrypoint(tmp_path, staged_app, True), staged_app, case / "dicom", out, workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "aspects.json").read_text())
    study = dcmread(next((case / "dicom").glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    assert result["study_instance_uid"] == study
    assert set(result["aspects"]) == {"left", "right"}
    names = sorted(p.name for p in (out / "dicom").glob("*.dcm"))
    assert names == ["key_bg.dcm", "key_sg.dcm", "kos.dcm", "seg.dcm", "sr.dcm"]
