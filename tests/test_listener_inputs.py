"""The listener with what real senders do: JPEG Lossless C-STOREs (stored as received), a C-STORE
whose data set never comes (answered at once), a second listener on the same spool (refused before
it touches anything) and a partial study (scored under the coverage rule, never a normal score)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.uid import JPEGLosslessSV1, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage

from aspects.errors import EXIT_BUSY
from listener.scp import STATUS_DATASET_MISMATCH, TRANSFER_SYNTAXES
from listener.spool import Spool
from aspects_research.dicom_servers import (ECHOSCU, ORTHANC_BIN, REPO, STORESCU, Listener, Orthanc, free_port, listener_settings,
                           storescu, wait_for)
from tests.test_app import tree_digest
from aspects_research.tools.robustness import encode, sorted_files

pytestmark = [pytest.mark.external,
    pytest.mark.skipif(ORTHANC_BIN is None, reason="Orthanc not installed (apt-get install orthanc)"),
    pytest.mark.skipif(STORESCU is None or ECHOSCU is None, reason="dcmtk not installed (apt-get install dcmtk)")
]


@pytest.fixture()
def idle_listener(tmp_path):
    """A listener that receives but never processes (quiet time of an hour)."""
    lst = Listener(tmp_path / "listener", listener_settings(tmp_path / "spool", free_port(), None, quiet_time_s=3600))
    yield lst.start()
    lst.stop()


def test_compressed_syntaxes_are_negotiated():
    for ts in ("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80",
               "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
               "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99"):
        assert ts in TRANSFER_SYNTAXES, ts


def test_jpeg_lossless_c_store_is_stored_as_received(idle_listener, phantom_case, tmp_path):
    folder = tmp_path / "jpeg"
    shutil.copytree(phantom_case(31, kind="normal", thickness=5.0) / "dicom", folder)
    encode(folder, "jpeg-lossless-sv1")
    files = sorted_files(folder)[:4]
    r = subprocess.run([STORESCU, "-xs", "-aet", "TESTSCU", "-aec", "ASPECTS", "127.0.0.1", str(idle_listener.port),
                        *map(str, files)], capture_output=True, text=True, timeout=120)  # -xs: propose JPEG Lossless SV1
    assert r.returncode == 0, r.stderr[-1500:]
    assert "Converting transfer syntax" not in r.stderr
    spool = Spool(idle_listener.spool)
    study = spool.studies()[0]
    stored = {p.stem: p for p in spool.instances(study)}
    assert len(stored) == 4
    for f in files:
        sent = dcmread(f)
        got = dcmread(stored[str(sent.SOPInstanceUID)])
        assert got.file_meta.TransferSyntaxUID == JPEGLosslessSV1
        assert got.PixelData == sent.PixelData  # the compressed stream, byte for byte
        assert (got.pixel_array == sent.pixel_array).all()


def test_c_store_without_its_data_set_is_answered_at_once(idle_listener):
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    ae.dimse_timeout = 15  # the listener's own network timeout is 30 s: no answer before this fails
    assoc = ae.associate("127.0.0.1", idle_listener.port, ae_title="ASPECTS")
    assert assoc.is_established
    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = CTImageStorage, generate_uid()
    req.DataSet = BytesIO(b"")  # announced, never sent (pynetdicom sends no fragment for it)
    cx = assoc._get_valid_context(CTImageStorage, "", "scu")
    assoc._reactor_checkpoint.clear()  # as pynetdicom's own send_c_echo: keep its reactor off the reply
    while not assoc._is_paused:
        time.sleep(0.001)
    assoc.dimse.send_msg(req, cx.context_id)
    _, rsp = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    assert rsp is not None and rsp.Status == STATUS_DATASET_MISMATCH
    assert assoc.is_established  # the association goes on: the next C-STORE works
    assoc.release()
    assert "announced a data set and sent none" in idle_listener.log()


def test_second_listener_on_the_same_spool_refuses_before_touching_it(idle_listener, tmp_path):
    settings = listener_settings(idle_listener.spool, free_port(), None)
    (tmp_path / "second.yaml").write_text(__import__("yaml").safe_dump(settings))
    before = tree_digest(idle_listener.spool)
    r = subprocess.run([sys.executable, "-m", "listener", "--config", str(tmp_path / "second.yaml")],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == EXIT_BUSY, r.stderr[-1500:]
    line = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert line.startswith(f"error[{EXIT_BUSY}]: the spool ") and f"pid {idle_listener.proc.pid}" in line
    assert tree_digest(idle_listener.spool) == before and idle_listener.alive()


def test_partial_study_follows_the_coverage_rule(tmp_path, phantom_case):
    """A transfer cut after the lower half of the head: scored, but not as a normal study."""
    case = phantom_case(47, kind="normal", thickness=5.0)
    files = sorted_files(case / "dicom")
    study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    pacs = Orthanc(tmp_path / "orthanc")
    lst = Listener(tmp_path / "listener", listener_settings(tmp_path / "spool", free_port(), pacs, quiet_time_s=1.0))
    try:
        lst.start()
        assert storescu(lst.port, files[: len(files) // 2]).returncode == 0
        wait_for(lambda: lst.state(study).get("state") in ("sent", "failed"), 600, "the study to be processed")
        st = lst.state(study)
        assert st["state"] == "sent", st
        result = json.loads(next((tmp_path / "spool" / study / "runs").glob("*/output/aspects.json")).read_text())
        assert result["score"] is None and result["aspects"] == {"left": None, "right": None}
        assert "incomplete_coverage" in result["flags"]
        assert st["aspects"] == {"left": None, "right": None}
        assert len(pacs.instances(study)) == len(st["results"])  # SEG, SR, key images all stored
    finally:
        lst.stop()
        pacs.stop()
