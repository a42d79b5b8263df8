"""The built MAP image, run with plain `docker run` as an orchestrator runs it (`make map-test`).

Opt-in: it needs a Docker daemon and the image that `make map` built (minutes, GBs), so it is
skipped, with the reason, unless ASPECTS_MAP_TEST=1 is set and `docker info` answers. MAP_TAG names
the image (default aspects:<the app version>, as `make map` tags it). One phantom from aspects-make-phantoms runs through the image
and through `python app.py` on this machine: the image must write aspects.json, SEG and SR with the
native run's scores, and a failed run must end the container with the app's exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from aspects import __version__
from aspects.dicom_sr import read_aspects_from_sr
from aspects.errors import EXIT_NO_DICOM

REPO = Path(__file__).resolve().parent.parent
MAP_TAG = os.environ.get("MAP_TAG", f"aspects:{__version__}")  # make map's default tag
MAP_UID = 1000  # the packager's default --uid: the app in the container writes as this user


def _skip_reason() -> str | None:
    if os.environ.get("ASPECTS_MAP_TEST") != "1":
        return "MAP image test is opt-in: build with `make map`, then `make map-test` (sets ASPECTS_MAP_TEST=1)"
    if shutil.which("docker") is None:
        return "ASPECTS_MAP_TEST=1 but no docker client on PATH"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "ASPECTS_MAP_TEST=1 but no Docker daemon answers (`docker info` failed)"
    return None


_SKIP = _skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.external, pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))]


def _writable_output(path: Path) -> Path:
    """An output folder the container's user (uid 1000) can write: a bind mount keeps host owners."""
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


def _docker_run(input_dir: Path, output_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    # holoscan asks for a 32 MiB stack (it warns of crashes below that), as env.sh sets natively.
    cmd = ["docker", "run", "--rm", "--ulimit", "stack=33554432", "-v", f"{input_dir}:/var/holoscan/input:ro",
           "-v", f"{output_dir}:/var/holoscan/output", MAP_TAG]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    return r, time.monotonic() - t0


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if subprocess.run(["docker", "image", "inspect", MAP_TAG], capture_output=True).returncode != 0:
        pytest.fail(f"MAP image {MAP_TAG} not found: build it first (make map, or MAP_TAG=<tag>)")
    root = tmp_path_factory.mktemp("map_phantom")
    # A scanner-size acute case (512 x 512, 5 mm) with a clear MCA infarct.
    subprocess.run([sys.executable, "-m", "aspects_research.tools.make_phantoms", "--out", str(root), "--count", "1",
                    "--seed", "31", "--kind", "acute", "--thickness", "5", "--hu-drop", "8",
                    "--pattern", "whole_mca"], check=True, capture_output=True, timeout=600, cwd=REPO)
    (case,) = [p for p in root.iterdir() if (p / "truth.json").is_file()]
    for p in case.rglob("*"):  # readable by the container's user whatever the umask
        p.chmod(p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0))
    case.chmod(0o755)
    root.chmod(0o755)
    return case


@pytest.fixture(scope="module")
def runs(study: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("map_runs")
    base.chmod(0o755)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (study / "dicom").iterdir())
    container_out = _writable_output(base / "container")
    r, container_s = _docker_run(study / "dicom", container_out)
    native_out = base / "native"
    t0 = time.monotonic()
    n = subprocess.run([sys.executable, str(REPO / "app.py"), "-i", str(study / "dicom"), "-o", str(native_out),
                        "-m", str(REPO / "models")], capture_output=True, text=True, timeout=1800, cwd=REPO)
    native_s = time.monotonic() - t0
    assert n.returncode == 0, n.stderr[-2000:]
    truth = json.loads((study / "truth.json").read_text())
    print(f"\nmap-test: {MAP_TAG}: container {container_s:.1f} s, native {native_s:.1f} s for one study "
          f"({len(before)} slices of 512 x 512); truth ASPECTS {truth['aspects']}")
    return {"run": r, "out": container_out, "native": native_out, "study": study, "before": before}


def test_map_image_writes_the_native_results(runs):
    r, out = runs["run"], runs["out"]
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    result = json.loads((out / "aspects.json").read_text())
    native = json.loads((runs["native"] / "aspects.json").read_text())
    print(f"map-test: container ASPECTS {result['aspects']}, infarct {result.get('infarct_volume_ml')} ml; "
          f"native ASPECTS {native['aspects']}, infarct {native.get('infarct_volume_ml')} ml")
    study_uid = dcmread(next((runs["study"] / "dicom").glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    assert result["study_instance_uid"] == study_uid
    assert result["aspects"] == native["aspects"]
    assert result["infarct_volume_ml"] == pytest.approx(native["infarct_volume_ml"], rel=0.01, abs=0.05)
    dicom = {p.name for p in (out / "dicom").glob("*.dcm")}
    assert {"seg.dcm", "sr.dcm"} <= dicom, dicom
    assert dcmread(out / "dicom" / "seg.dcm", stop_before_pixels=True).Modality == "SEG"
    assert read_aspects_from_sr(out / "dicom" / "sr.dcm") == result["aspects"]
    # The input was mounted read-only; nothing in it changed.
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (runs["study"] / "dicom").iterdir()) == runs["before"]


def test_map_image_exits_with_the_apps_code_on_an_empty_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tmp_path.chmod(0o755)
    r, _ = _docker_run(empty, _writable_output(tmp_path / "out"))
    assert r.returncode == EXIT_NO_DICOM, (r.returncode, (r.stdout + r.stderr)[-2000:])
    assert f"error[{EXIT_NO_DICOM}]:" in r.stderr
    assert not (tmp_path / "out" / "aspects.json").exists()
