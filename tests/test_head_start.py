"""The app's head start (aspects/head_start.py): the study's first stages run before the heavy
imports, and the operators get exactly what they would have computed, errors included."""

from __future__ import annotations

import logging
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from aspects import registration
from aspects.atlas import LazyAtlas
from aspects.dicom_input import scan_folder
from aspects.errors import InputError
from aspects.head_start import EarlyLog, HeadStart, input_folder_from_argv
from aspects.preprocess import preprocess_series
from aspects.selection import load_rules
from aspects.series import choose_series, load_series
from tests.support.ct_series import make_ct_series


def _write(folder: Path, datasets) -> Path:
    folder.mkdir()
    for i, ds in enumerate(datasets):
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)
    return folder


def test_the_study_folder_is_read_from_the_command_line_as_the_app_reads_it(monkeypatch):
    monkeypatch.delenv("HOLOSCAN_INPUT_PATH", raising=False)
    assert input_folder_from_argv(["app.py", "-i", "/data/in", "-o", "out"]) == Path("/data/in")
    assert input_folder_from_argv(["app.py", "--input=/data/in", "-m", "models"]) == Path("/data/in")
    assert input_folder_from_argv(["app.py", "-o", "out"]) is None  # nothing to read: no head start
    assert input_folder_from_argv(["app.py", "--help"]) is None
    assert input_folder_from_argv(["app.py", "-i"]) is None  # malformed: the app's parser reports it
    monkeypatch.setenv("HOLOSCAN_INPUT_PATH", "/var/holoscan/input")  # the MAP: no arguments
    assert input_folder_from_argv(["app.py"]) == Path("/var/holoscan/input")
    assert input_folder_from_argv(["app.py", "-i", "/data/in"]) == Path("/data/in")


def test_a_folder_without_dicom_fails_in_the_scan_with_the_loaders_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    head = HeadStart(empty, LazyAtlas()).start()
    head.wait_until_registering()  # returns: the stages ended without a registration
    with pytest.raises(InputError) as direct:
        scan_folder(empty)
    with pytest.raises(InputError) as taken:
        head.take("scan")
    assert (taken.value.code, taken.value.one_line()) == (direct.value.code, direct.value.one_line())
    head.cancel()
    assert head.after("scan", None) is None


def test_a_partial_series_fails_in_the_selection_with_the_selectors_error(tmp_path):
    folder = _write(tmp_path / "study", make_ct_series(n=3))
    head = HeadStart(folder, LazyAtlas()).start()
    head.wait_until_registering()  # returns: the selection failed, no registration
    scan = head.take("scan")
    assert len(scan.datasets) == 3
    ahead = head.after("scan", scan)
    assert ahead is not None
    with pytest.raises(InputError) as direct:
        choose_series(scan_folder(folder), load_rules())
    with pytest.raises(InputError) as taken:
        ahead.result()
    assert (taken.value.code, taken.value.one_line()) == (direct.value.code, direct.value.one_line())
    assert head.after("scan", scan) is None  # handed over once: the head start holds it no longer
    head.cancel()


@pytest.mark.slow  # two registrations (~10 s each on 2 loaded cores)
def test_each_stage_gives_what_the_operator_would_compute(tmp_path):
    """Scan, selection and HU volume as the stage functions give them; preprocessing fails on this
    10-slice series exactly as preprocess_series does (the error is the operator's to raise)."""
    folder = _write(tmp_path / "study", make_ct_series())
    head = HeadStart(folder, LazyAtlas()).start()
    head.wait_until_registering()
    scan = head.take("scan")
    assert head.after("scan", scan_folder(folder)) is None  # not its own scan (identity): the operator computes
    selection = head.after("scan", scan).result()
    series = head.after("selection", selection).result()
    direct = load_series(choose_series(scan_folder(folder), load_rules()))
    assert series.selection is selection and selection.chosen.label == direct.selection.chosen.label
    assert [ds.SOPInstanceUID for ds in series.datasets] == [ds.SOPInstanceUID for ds in direct.datasets]
    hu = sitk.GetArrayViewFromImage(series.volume.image)
    assert hu.size and np.array_equal(hu, sitk.GetArrayViewFromImage(direct.volume.image))
    with pytest.raises(InputError) as expected:
        preprocess_series(direct, head.atlas())
    preprocessed = head.after("series", series)
    with pytest.raises(InputError) as taken:
        preprocessed.result()
    assert taken.value.one_line() == expected.value.one_line()
    assert all(head.after(stage, value) is None for stage, value in (("scan", scan), ("selection", selection),
                                                                      ("series", series)))  # none kept
    head.cancel()


def test_stages_not_run_after_a_cancel_raise_instead_of_waiting(tmp_path):
    folder = _write(tmp_path / "study", make_ct_series())
    head = HeadStart(folder, LazyAtlas())
    head.cancel()  # before any stage: none runs
    head.start().cancel()
    with pytest.raises(CancelledError):
        head.take("scan")
    assert head.after("scan", None) is None


def test_a_registration_child_is_announced_to_the_head_start():
    registration.CHILD_STARTED.clear()
    assert registration._in_child(lambda: 0) == 0
    assert registration.CHILD_STARTED.is_set()


def test_early_log_records_reach_app_log_first_and_once(tmp_path):
    root = logging.getLogger()
    early = EarlyLog()
    root.addHandler(early)
    log = logging.getLogger("aspects.test_head_start")
    log.warning("kept before the log file opens")
    handler = logging.FileHandler(tmp_path / "app.log", mode="w")
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    try:
        early.hand_over(handler)
        log.warning("written directly")
    finally:
        root.removeHandler(handler)
        handler.close()
    assert early not in root.handlers
    assert (tmp_path / "app.log").read_text().splitlines() == ["kept before the log file opens", "written directly"]
