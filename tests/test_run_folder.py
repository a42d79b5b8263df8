"""The output folder and the run's life: unusable output paths, the lock, a rerun over an earlier
result, SIGTERM / SIGINT mid-run, results moved into place whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aspects.errors import EXIT_BUSY, EXIT_NO_SERIES, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, InputError
from aspects.run_folder import LOCK_FILE, OutputFolder
from tests.support import REPO as ROOT
from tests.support.app_runs import run_app
from aspects_research.tools.robustness import edit, sorted_files


@pytest.fixture(scope="module")
def study(phantom_case):
    return phantom_case(31, kind="normal", thickness=5.0) / "dicom"


def _one_error_line(proc, code: int) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, proc.stderr[-1500:]
    assert lines and lines[-1].startswith(f"error[{code}]: ") and "Traceback" not in proc.stderr
    return lines[-1]


@pytest.mark.slow
@pytest.mark.e2e
def test_output_path_that_is_a_file_or_below_a_file_is_a_usage_error(study, tmp_path):
    (tmp_path / "out").write_text("not a folder")
    line = _one_error_line(run_app(study, tmp_path / "out"), EXIT_USAGE)
    assert "is a file, not a folder" in line
    line = _one_error_line(run_app(study, tmp_path / "out" / "sub"), EXIT_USAGE)
    assert "cannot create the output folder" in line
    assert (tmp_path / "out").read_text() == "not a folder"


@pytest.mark.slow
@pytest.mark.e2e
def test_failed_rerun_replaces_the_earlier_result_whole(study, tmp_path):
    inp = tmp_path / "input"
    shutil.copytree(study, inp)
    edit(sorted_files(inp), lambda ds, i: (setattr(ds, "Modality", "MR"),
                                           setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4")))
    out = tmp_path / "out"
    # a located finding's key image and the findings' labels too: a stale one would show blood
    # that the new result does not report
    for rel in ("dicom/seg.dcm", "dicom/sr.dcm", "png/key_bg.png", "nifti/regions.nii.gz", "dicom/key_haemorrhage.dcm",
                "png/key_haemorrhage.png", "nifti/findings.nii.gz"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"from an earlier run")
    (out / "aspects.json").write_text(json.dumps({"outputs": {"seg": "dicom/seg.dcm"}}))
    (out / "notes.txt").write_text("the user's own file")
    _one_error_line(run_app(inp, out), EXIT_NO_SERIES)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [LOCK_FILE, "app.log", "error.json", "notes.txt"]
    assert json.loads((out / "error.json").read_text())["exit_code"] == EXIT_NO_SERIES


def _start(inp: Path, out: Path, console: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "app.py"), "-i", str(inp), "-o", str(out), "-m", str(ROOT / "models")]
    with open(console, "wb") as f:  # a file, not a pipe: a full pipe would stall the app
        return subprocess.Popen(cmd, stdout=f, stderr=f, cwd=str(ROOT))


def _wait_for_pipeline(proc: subprocess.Popen, out: Path) -> None:
    end = time.monotonic() + 300
    while time.monotonic() < end:
        assert proc.poll() is None, f"the app ended early with {proc.returncode}"
        log = out / "app.log"
        if log.is_file() and "preprocessing:" in log.read_text():
            return
        time.sleep(0.5)
    raise TimeoutError("the app did not reach preprocessing")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGINT, EXIT_SIGINT)])
def test_signal_mid_run_exits_non_zero_and_says_interrupted(study, tmp_path, sig, code):
    out = tmp_path / "out"
    first = _start(study, out, tmp_path / "console.log")
    try:
        _wait_for_pipeline(first, out)
        if sig == signal.SIGTERM:  # while it runs, a second app on the same folder is refused
            second = run_app(study, out)
            line = _one_error_line(second, EXIT_BUSY)
            assert f"pid {first.pid}" in line and "in use by another run" in line
        time.sleep(2)
        first.send_signal(sig)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    err = (tmp_path / "console.log").read_text()
    assert first.returncode == code, err[-1500:]
    assert err.strip().splitlines()[-1].startswith(f"error[{code}]: interrupted by {signal.Signals(sig).name}")
    error = json.loads((out / "error.json").read_text())
    assert error["exit_code"] == code and error["interrupted"] is True
    assert not (out / "aspects.json").exists() and not (out / "dicom").exists()
    assert not list(out.glob(".aspects-partial-*"))


def test_commit_moves_results_into_place_aspects_json_last(tmp_path):
    folder = OutputFolder(tmp_path / "out")
    folder.prepare()
    folder.lock()
    part = folder.start_partial()
    for rel in ("aspects.json", "dicom/seg.dcm", "png/key_bg.png"):
        (part / rel).parent.mkdir(parents=True, exist_ok=True)
        (part / rel).write_text(rel)
    assert folder.commit() == ["dicom/seg.dcm", "png/key_bg.png", "aspects.json"]
    assert (tmp_path / "out" / "dicom" / "seg.dcm").read_text() == "dicom/seg.dcm" and not part.exists()


def test_lock_is_exclusive_between_processes(tmp_path):
    holder = OutputFolder(tmp_path / "out")
    holder.prepare()
    holder.lock()
    probe = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
             "from aspects.run_folder import OutputFolder\n"
             "from aspects.errors import InputError\n"
             f"f = OutputFolder({str(tmp_path / 'out')!r})\n"
             "try:\n    f.lock()\nexcept InputError as e:\n    print(e.code, e.message)\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith(f"{EXIT_BUSY} ") and f"(pid {os.getpid()})" in r.stdout


def test_output_folder_errors_are_input_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError) as err:
        OutputFolder(tmp_path / "file").prepare()
    assert err.value.code == EXIT_USAGE


_NOISY_END = """
import logging, os, sys, threading, time
from aspects.app_logging import hold_log_handlers, last_console_line
logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[
    logging.StreamHandler(), logging.FileHandler(sys.argv[1])])
def stage():  # a stage on another thread that logs as fast as it can, as the run is stopped
    while True:
        logging.getLogger("stage").info("stage still logging")
        print("a library's own print", file=sys.stderr)
for _ in range(2):
    threading.Thread(target=stage, daemon=True).start()
time.sleep(0.3)
hold_log_handlers()
logging.getLogger("app").error("interrupted")
last_console_line("error[143]: interrupted by SIGTERM")
os._exit(143)
"""


def test_the_error_line_stays_last_while_other_threads_log(tmp_path):
    """A signal's error line is the console's last, however busy the other threads are."""
    proc = subprocess.run([sys.executable, "-c", _NOISY_END, str(tmp_path / "app.log")], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143
    lines = proc.stderr.strip().splitlines()
    assert "stage still logging" in proc.stderr and lines[-1] == "error[143]: interrupted by SIGTERM"
    assert (tmp_path / "app.log").read_text().strip().splitlines()[-1] == "interrupted"
