"""The warm server (aspects/serve.py): study after study with the atlas and models kept loaded, the
same results as a cold ``python app.py`` per study, and its command line / protocol errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from aspects.errors import EXIT_NO_DICOM, EXIT_OK, EXIT_USAGE
from aspects.pipeline import Pipeline
from aspects.serve import main, serve_stdio
from tests.support.app_runs import run_app

REPO = Path(__file__).resolve().parent.parent


def _without_timings(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "timings_s"}


@pytest.mark.slow
@pytest.mark.e2e
def test_a_warm_server_gives_the_cold_apps_results_on_two_studies(phantom_case, tmp_path):
    studies = [phantom_case(31, kind="normal", thickness=5.0), phantom_case(7, kind="acute", thickness=5.0)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for case in studies:
        (inbox / case.name).symlink_to(case / "dicom", target_is_directory=True)
    served = subprocess.run([sys.executable, "-m", "aspects.serve", "-m", str(REPO / "models"), "-o",
                             str(tmp_path / "warm"), *(str(inbox / c.name) for c in studies)],
                            cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert served.returncode == EXIT_OK, served.stderr[-2000:]
    assert served.stdout.count(": exit 0 in ") == 2, served.stdout
    assert served.stderr.count("warm in ") == 1  # loaded once for both studies
    for case in studies:
        cold = run_app(case / "dicom", tmp_path / "cold" / case.name, REPO / "models")
        assert cold.returncode == 0, cold.stderr[-1500:]
        warm_dir, cold_dir = tmp_path / "warm" / case.name, tmp_path / "cold" / case.name
        warm_doc, cold_doc = (json.loads((d / "aspects.json").read_text()) for d in (warm_dir, cold_dir))
        assert _without_timings(warm_doc) == _without_timings(cold_doc), case.name
        for name in ("infarct", "regions"):
            a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(d / "nifti" / f"{name}.nii.gz"))) for d in (warm_dir, cold_dir))
            np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "warm" / studies[1].name / "aspects.json").read_text())["methods"]["infarct"] == "model"


def test_the_stdio_protocol_answers_every_request_and_survives_bad_ones(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    requests = ["not json\n", json.dumps({"input": str(empty)}) + "\n", "\n",
                json.dumps({"input": str(empty), "output": str(tmp_path / "out")}) + "\n"]
    replies = io.StringIO()
    serve_stdio(Pipeline(None), requests, replies)
    got = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert [r["exit_code"] for r in got] == [EXIT_USAGE, EXIT_USAGE, EXIT_NO_DICOM]
    assert got[0]["error"].startswith(f"error[{EXIT_USAGE}]: bad request")
    assert got[2]["error"].startswith(f"error[{EXIT_NO_DICOM}]:")
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] == EXIT_NO_DICOM


def test_command_line_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main([]) == EXIT_USAGE
    assert main([str(tmp_path)]) == EXIT_USAGE  # batch without -o
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == EXIT_USAGE
    assert main(["--stdio", str(tmp_path)]) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"error[{EXIT_USAGE}]: ") for line in lines), lines
    assert "missing" in lines[2]
    assert not (tmp_path / "out").exists()
