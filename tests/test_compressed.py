"""Compressed transfer syntaxes: every syntax a PACS sends decodes through the app's series loading to the
same HU as the uncompressed series (lossless exactly, lossy closely), and the app gives the same
result on a study whose slices use all of them (plus files without preamble and 300 junk files).

Inputs are made by independent encoders: dcmtk (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv) and GDCM
(gdcmconv), as a site's archive would produce them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from aspects.dicom_geometry import sort_slices
from aspects.dicom_input import read_dataset, scan_folder
from aspects.errors import EXIT_UNDECODABLE, InputError
from aspects.series import hu_stack
from tests.support.app_runs import run_app, run_pipeline
from aspects_research.tools.robustness import ENCODERS, corrupt_pixel_stream, encode, sorted_files, strip_preamble

pytestmark = [pytest.mark.external]

LOSSY = {"jpeg2000-lossy": 20.0, "jpeg-ls-near-lossless": 4.0}  # max |HU error| allowed
needs_tools = pytest.mark.skipif(any(shutil.which(t[0], path="/usr/bin:/bin") is None for t in ENCODERS.values()),
                                 reason="dcmtk / gdcmconv missing (apt-get install dcmtk libgdcm-tools)")


def _app_volume(folder: Path) -> np.ndarray:
    """The HU stack as the app's series loading builds it (aspects.series.load_series, without the
    selection rules, which a six-slice slab would not pass)."""
    headers = sort_slices(scan_folder(folder).datasets)
    return hu_stack([read_dataset(str(h.filename))[0] for h in headers])


@pytest.fixture(scope="module")
def slab(phantom_case, tmp_path_factory):
    """Six slices of a synthetic study (signed 16-bit storage with padding)."""
    case = phantom_case(42, kind="acute", thickness=5.0, hu_drop=10.0, side="left", pattern="whole_mca")
    folder = tmp_path_factory.mktemp("slab")
    for p in sorted_files(case / "dicom")[14:20]:
        shutil.copy(p, folder / p.name)
    return folder


@needs_tools
@pytest.mark.parametrize("syntax", list(ENCODERS))
def test_each_syntax_decodes_through_the_app_loader_to_the_same_hu(slab, tmp_path, syntax):
    reference = _app_volume(slab)
    enc = tmp_path / syntax
    shutil.copytree(slab, enc)
    encode(enc, syntax)
    stored = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in enc.glob("*.dcm")}
    assert len(stored) == 1 and stored != {"1.2.840.10008.1.2.1"}, stored  # really re-encoded
    got = _app_volume(enc)
    assert got.shape == reference.shape
    err = np.abs(got - reference)
    assert err.max() <= LOSSY.get(syntax, 0.0), f"{syntax}: max HU error {err.max()}"


@needs_tools
def test_a_corrupt_compressed_slice_is_an_input_error_naming_the_file(slab, tmp_path):
    enc = tmp_path / "broken"
    shutil.copytree(slab, enc)
    encode(enc, "jpeg-lossless-sv1")
    bad = sorted_files(enc)[3]
    corrupt_pixel_stream(bad)
    with pytest.raises(InputError) as err:
        _app_volume(enc)
    assert err.value.code == EXIT_UNDECODABLE and bad.name in err.value.message
    assert "JPEG Lossless" in err.value.message and "cannot be decoded" in err.value.message


@pytest.fixture(scope="module")
def mixed_runs(phantom_case, pipeline, tmp_path_factory):
    """The same study twice: uncompressed (in-process), and through the app's command line with its
    slices spread over every compressed syntax, two files without preamble and 300 junk files beside them."""
    case = phantom_case(42, kind="acute", thickness=5.0, hu_drop=10.0, side="left", pattern="whole_mca")
    work = tmp_path_factory.mktemp("mixed")
    plain = run_pipeline(pipeline, case / "dicom", work / "plain_out")
    mixed = work / "mixed"
    shutil.copytree(case / "dicom", mixed)
    files = sorted_files(mixed)
    syntaxes = list(ENCODERS)
    for k, p in enumerate(files[2:-2]):  # the two lowest and highest slices: no preamble
        one = work / "one" / str(k)
        one.mkdir(parents=True)
        shutil.move(str(p), one / p.name)
        encode(one, syntaxes[k % len(syntaxes)])
        shutil.move(str(one / p.name), p)
    for p in files[:2] + files[-2:]:
        strip_preamble(p)
    for i in range(300):
        (mixed / f"junk{i:03d}.txt").write_text(f"not DICOM {i}")
    return {"plain": plain, "plain_out": work / "plain_out", "mixed": run_app(mixed, work / "mixed_out"),
            "mixed_out": work / "mixed_out", "syntaxes": syntaxes}


@pytest.mark.slow
@pytest.mark.e2e
@needs_tools
def test_study_in_every_syntax_scores_as_the_uncompressed_one(mixed_runs):
    assert mixed_runs["plain"].returncode == 0, mixed_runs["plain"].stderr
    proc = mixed_runs["mixed"]
    assert proc.returncode == 0, proc.stderr[-1500:]
    a = json.loads((mixed_runs["plain_out"] / "aspects.json").read_text())
    b = json.loads((mixed_runs["mixed_out"] / "aspects.json").read_text())
    assert (b["aspects"], b["score"], b["affected_side"]) == (a["aspects"], a["score"], a["affected_side"])
    assert b["infarct_volume_ml"] == pytest.approx(a["infarct_volume_ml"], rel=0.05)
    assert a["affected_side"] == "left" and a["score"] < 10  # a study with something to score


@pytest.mark.slow
@pytest.mark.e2e
@needs_tools
def test_junk_is_summarised_in_one_console_line_and_preambleless_files_are_read(mixed_runs):
    err = mixed_runs["mixed"].stderr
    skip_lines = [ln for ln in err.splitlines() if "skipped" in ln and "file(s) that are not usable" in ln]
    assert len(skip_lines) == 1 and "skipped 300 file(s)" in skip_lines[0] and "and 297 more" in skip_lines[0]
    assert "junk000.txt" in skip_lines[0]
    log = (mixed_runs["mixed_out"] / "app.log").read_text()
    assert log.count("skipped ") >= 300 and "junk299.txt" in log  # the full list is in the log
    assert "read 4 file(s) without the 128-byte DICOM preamble" in log
