"""The listener against real servers: Orthanc as the PACS, dcmtk storescu / pynetdicom as scanners.

These tests move small CT instances (tests/support/listener_dicom.py); the full round trip through the
app is in test_listener_e2e.py. Skipped only when the Orthanc binary or dcmtk is absent.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from listener.config import Destination
from listener.sender import SendError, send_files
from listener.spool import Spool
from tests.support.listener_dicom import (write_ct_series, write_ct_without_study_uid, write_mr_instance,
                                     write_unparseable_ct)
from aspects_research.dicom_servers import (ECHOSCU, ORTHANC_BIN, STORESCU, Listener, Orthanc, echo, free_port, listener_settings,
                           storescu, wait_for)

pytestmark = [pytest.mark.external,
    pytest.mark.skipif(ORTHANC_BIN is None, reason="Orthanc not installed (apt-get install orthanc)"),
    pytest.mark.skipif(STORESCU is None or ECHOSCU is None, reason="dcmtk not installed (apt-get install dcmtk)")
]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    o = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield o
    o.stop()


def _dest(o: Orthanc, **kw) -> Destination:
    return Destination(o.aet, "127.0.0.1", o.dicom_port, **kw)


def _sops(o: Orthanc, study: str):
    return sorted(i["sop_instance_uid"] for i in o.instances(study))


def test_sender_stores_in_orthanc_and_skips_what_was_already_sent(orthanc, tmp_path):
    files = write_ct_series(tmp_path, 5)
    uids = [str(dcmread(f).SOPInstanceUID) for f in files]
    study = str(dcmread(files[0]).StudyInstanceUID)
    recorded = []
    assert send_files(files, _dest(orthanc), "ASPECTS", recorded.append, already_sent={uids[0]}) == 4
    assert sorted(recorded) == sorted(uids[1:]) == _sops(orthanc, study)  # the first was never sent
    assert send_files(files, _dest(orthanc), "ASPECTS", recorded.append, already_sent=set(recorded)) == 1
    assert _sops(orthanc, study) == sorted(uids)


def test_sender_retries_with_backoff_until_the_pacs_is_up(tmp_path):
    files = write_ct_series(tmp_path / "ct", 2)
    port = free_port()
    waits, started = [], []

    def sleep(s):  # the PACS comes up during the second wait
        waits.append(s)
        if len(waits) == 2:
            started.append(Orthanc(tmp_path / "late-pacs", dicom_port=port))

    dest = Destination("ORTHANC", "127.0.0.1", port, retries=4, backoff_s=0.5, max_backoff_s=0.8, timeout_s=5)
    try:
        assert send_files(files, dest, "ASPECTS", lambda s: None, sleep=sleep) == 2
        assert waits == [0.5, 0.8]  # doubled, then capped
        assert len(started[0].instances()) == 2
    finally:
        for o in started:
            o.stop()


def test_sender_gives_up_with_a_reason(tmp_path):
    files = write_ct_series(tmp_path, 1)
    dest = Destination("NOBODY", "127.0.0.1", free_port(), retries=2, backoff_s=0.1, timeout_s=2)
    waits = []
    with pytest.raises(SendError, match=r"1 file\(s\) not stored by NOBODY.* after 3 attempts: association"):
        send_files(files, dest, "ASPECTS", lambda s: None, sleep=waits.append)
    assert waits == [0.1, 0.2]


@pytest.fixture()
def idle_listener(tmp_path):
    """A listener that receives but never processes (quiet time of an hour)."""
    lst = Listener(tmp_path / "listener", listener_settings(tmp_path / "spool", free_port(), None, quiet_time_s=3600))
    yield lst.start()
    lst.stop()


def test_refusals_are_reported_and_the_service_keeps_running(idle_listener, tmp_path):
    lst = idle_listener
    ct = write_ct_series(tmp_path / "ct", 2)
    bad_ae = storescu(lst.port, ct, calling="INTRUDER")
    assert bad_ae.returncode != 0 and "Calling AE Title Not Recognized" in bad_ae.stderr
    wrong_called = storescu(lst.port, ct, called="OTHERNODE")
    assert wrong_called.returncode != 0 and "Called AE Title Not Recognized" in wrong_called.stderr

    mr = storescu(lst.port, [write_mr_instance(tmp_path / "mr.dcm")])
    assert mr.returncode != 0 and "No presentation context for: (MR)" in mr.stderr

    nostudy = storescu(lst.port, [write_ct_without_study_uid(tmp_path / "nostudy.dcm")])
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in nostudy.stderr

    ae = AE(ae_title="TESTSCU")  # storescu will not send a file it cannot parse; pynetdicom sends the bytes
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", lst.port, ae_title="ASPECTS")
    status = assoc.send_c_store(write_unparseable_ct(tmp_path / "broken.dcm"))
    assoc.release()
    assert status.Status in (0xA900, 0xC210)

    ok = storescu(lst.port, ct)
    assert ok.returncode == 0 and lst.alive() and echo(lst.port, "ASPECTS", "TESTSCU") == 0
    spool = Spool(lst.spool)
    assert len(spool.studies()) == 1 and len(spool.instances(spool.studies()[0])) == 2
    assert len(spool.rejected()) == 2  # the two refused CT instances, each with a .txt reason
    assert all(p.with_suffix(".txt").read_text().strip() for p in spool.rejected())
    log = lst.log()
    assert "association from INTRUDER (127.0.0.1) REFUSED: calling AE title" in log
    assert "association from TESTSCU (127.0.0.1) REFUSED: called AE title 'OTHERNODE'" in log
    assert log.count("REFUSED (status 0x") == 2
    assert "stored 2 instance(s) (study " in log


def test_concurrent_associations_all_land_in_the_spool(idle_listener, tmp_path):
    lst = idle_listener
    a = write_ct_series(tmp_path / "a", 24, size=128)
    b = write_ct_series(tmp_path / "b", 8, size=128)
    parts = [a[0::3], a[1::3], a[2::3], b]  # one study over three associations at once, plus another
    results = [None] * len(parts)

    def push(i):
        results[i] = storescu(lst.port, parts[i])

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr[-300:] for r in results if r.returncode]
    spool = Spool(lst.spool)
    uid = lambda files: str(dcmread(files[0]).StudyInstanceUID)  # noqa: E731
    assert sorted(spool.studies()) == sorted([uid(a), uid(b)])
    assert len(spool.instances(uid(a))) == 24 and len(spool.instances(uid(b))) == 8
    assert lst.log().count(f"stored 8 instance(s) (study {uid(a)}: 8)") == 3


def test_sigkill_while_receiving_loses_no_acknowledged_instance(idle_listener, tmp_path):
    lst = idle_listener
    files = write_ct_series(tmp_path / "ct", 40, size=256)  # 128 KiB each: the kill lands mid-transfer
    by_uid = {str(dcmread(f).SOPInstanceUID): f for f in files}
    study = str(dcmread(files[0]).StudyInstanceUID)
    spool = Spool(lst.spool)
    acked = []

    def killer():
        wait_for(lambda: len(spool.instances(study)) >= 10, 60, "10 instances in the spool", every=0.005)
        lst.kill()

    t = threading.Thread(target=killer)
    t.start()
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", lst.port, ae_title="ASPECTS")
    for uid, f in by_uid.items():
        if not assoc.is_established:
            break
        status = assoc.send_c_store(f)
        if getattr(status, "Status", None) == 0x0000:
            acked.append(uid)
    if assoc.is_established:
        assoc.release()
    t.join()
    assert 5 <= len(acked) < len(files), "the kill did not interrupt the transfer"

    lst.start()  # restart on the same spool: every acknowledged instance is there, byte for byte
    on_disk = {p.stem: p for p in spool.instances(study)}
    assert set(acked) <= set(on_disk)
    for uid in acked:
        assert dcmread(on_disk[uid]).PixelData == dcmread(by_uid[uid]).PixelData
    assert not list(lst.spool.glob("**/.*.tmp"))  # partial writes removed at start-up

    assert storescu(lst.port, files).returncode == 0  # the scanner sends the study again
    assert sorted(p.stem for p in spool.instances(study)) == sorted(by_uid)


def test_restart_sends_only_results_the_pacs_has_not_acknowledged(orthanc, tmp_path):
    """A study killed in the middle of sending: on restart the rest is sent, nothing twice."""
    spool = Spool(tmp_path / "spool")
    results = write_ct_series(tmp_path / "results", 4)  # real DICOM files standing in as results
    study = str(dcmread(results[0]).StudyInstanceUID)
    uids = [str(dcmread(f).SOPInstanceUID) for f in results]
    for f, uid in zip(results, uids):
        spool.store_instance(study, uid, f.read_bytes())
    out = spool.run_dir(study, 1) / "output" / "dicom"
    out.mkdir(parents=True)
    state = {"study_uid": study, "state": "sending", "run": 1, "input_instances": 4, "exit_code": 0,
             "results": [], "sent": {uids[0]: "2026-01-01T00:00:00+00:00"}, "history": []}
    for f, uid in zip(results, uids):
        shutil.copy(f, out / f.name)
        state["results"].append({"file": str((out / f.name).relative_to(spool.study_dir(study))),
                                 "sop_instance_uid": uid, "sop_class_uid": CTImageStorage})
    spool.write_state(study, state)

    lst = Listener(tmp_path / "l", listener_settings(spool.root, free_port(), orthanc, quiet_time_s=3600)).start()
    try:
        wait_for(lambda: lst.state(study).get("state") == "sent", 60, "the study to be sent")
        assert _sops(orthanc, study) == sorted(uids[1:])  # uids[0] counted as sent: not sent again
        assert set(lst.state(study)["sent"]) == set(uids)
        lst.stop()
        lst.start()  # a restart after `sent` sends nothing
        time.sleep(1.5)
        assert _sops(orthanc, study) == sorted(uids[1:])
    finally:
        lst.stop()
    log = lst.log()
    assert "1 study/studies, 1 to process or send" in log and "1 study/studies, 0 to process or send" in log
    assert f"study {study}: sending 3 result(s)" in log and log.count("result(s) to ORTHANC") == 1
