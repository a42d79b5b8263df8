"""The hospital round trip with the real app: scanner -> listener -> app.py -> Orthanc (the PACS).

One synthetic 5 mm head CT is pushed with storescu; the listener is SIGKILLed while the app runs
and restarted; the SEG, SR and key images must reach Orthanc exactly once, in the CT's study, with
the SR's ASPECTS equal to the listener's aspects.json. A second (non-head) study pushed during
processing is queued, then fails with the app's one-line error and stays in the spool.
About 95 s on 2 busy cores (two app runs of the head study, one short failing run).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import psutil
import pytest
from pydicom import dcmread

from aspects.dicom_sr import read_aspects_from_sr
from listener.jobs import KEY_OBJECT_SELECTION
from tests.support.listener_dicom import write_ct_series
from aspects_research.dicom_servers import ECHOSCU, ORTHANC_BIN, STORESCU, Listener, Orthanc, free_port, listener_settings, storescu, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.external,
    pytest.mark.skipif(ORTHANC_BIN is None, reason="Orthanc not installed (apt-get install orthanc)"),
    pytest.mark.skipif(STORESCU is None or ECHOSCU is None, reason="dcmtk not installed (apt-get install dcmtk)")
]

SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def _kind(sop_class: str) -> str:
    if sop_class == SEG:
        return "SEG"
    if sop_class == KEY_OBJECT_SELECTION:
        return "KOS"
    if sop_class.startswith("1.2.840.10008.5.1.4.1.1.88."):
        return "SR"
    if sop_class.startswith("1.2.840.10008.5.1.4.1.1.7"):
        return "SC"
    return sop_class


def test_round_trip_survives_sigkill_during_processing(tmp_path, phantom_case):
    case = phantom_case(11, kind="acute", thickness=5.0)
    ct = sorted((case / "dicom").glob("*.dcm"))
    study = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    other = write_ct_series(tmp_path / "not-a-head", 4)
    other_study = str(dcmread(other[0]).StudyInstanceUID)

    pacs = Orthanc(tmp_path / "orthanc")
    lst = Listener(tmp_path / "listener", listener_settings(tmp_path / "spool", free_port(), pacs, quiet_time_s=1.0))
    try:
        lst.start()
        assert storescu(lst.port, ct).returncode == 0
        wait_for(lambda: lst.state(study).get("app_pid"), 60, "the app to start")
        pid = lst.state(study)["app_pid"]
        assert storescu(lst.port, other).returncode == 0  # arrives while the first study is processing
        time.sleep(3)
        assert lst.state(study)["state"] == "processing" and lst.state(other_study).get("state") is None
        lst.kill()
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                 10, "the orphaned app to die with the listener")
        assert len(list((lst.spool / study / "incoming").glob("*.dcm"))) == len(ct)

        lst.start()
        wait_for(lambda: lst.state(study).get("state") in ("sent", "failed"), 240, "the study to be processed")
        st = lst.state(study)
        assert st["state"] == "sent", st
        assert st["run"] == 2 and st["input_instances"] == len(ct)
        wait_for(lambda: lst.state(other_study).get("state") == "failed", 120, "the queued study to finish")

        found = pacs.instances(study)
        kinds = Counter(_kind(i["sop_class_uid"]) for i in found)
        assert kinds == Counter({"SEG": 1, "SR": 1, "KOS": 1, "SC": 2}), kinds  # exactly once, nothing else
        assert _kind(st["results"][-1]["sop_class_uid"]) == "KOS"  # sent after what it flags
        assert sorted(i["sop_instance_uid"] for i in found) == sorted(r["sop_instance_uid"] for r in st["results"])
        sr = next(i for i in found if _kind(i["sop_class_uid"]) == "SR")
        (tmp_path / "sr.dcm").write_bytes(pacs.file(sr["id"]))
        result = json.loads((lst.spool / study / "runs" / "2" / "output" / "aspects.json").read_text())
        assert read_aspects_from_sr(tmp_path / "sr.dcm") == result["aspects"]
        assert result["study_instance_uid"] == study
        assert pacs.instances(other_study) == []
    finally:
        lst.stop()
        pacs.stop()

    failed = lst.state(other_study)
    assert failed["exit_code"] in (3, 4, 5) and failed["app_error"].startswith(f"error[{failed['exit_code']}]:")
    assert len(list((lst.spool / other_study / "incoming").glob("*.dcm"))) == 4  # kept
    log = lst.log()
    assert "was interrupted (listener stopped or crashed); running again" in log
    assert f"study {other_study}: FAILED: app exited with code" in log
