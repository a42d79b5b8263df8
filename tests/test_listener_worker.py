"""The worker runs the real app.py on spooled studies: failures and timeouts are recorded, kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import pytest
from pydicom import dcmread

from listener.config import parse_config
from listener.jobs import Worker
from listener.spool import Spool
from tests.support.listener_dicom import write_ct_series

REPO = Path(__file__).resolve().parent.parent


def _worker(tmp_path: Path, timeout_s: float, script: Path = REPO / "app.py", warm: bool = False) -> Worker:
    cfg = parse_config({
        "listener": {"ae_title": "ASPECTS", "port": 11112, "allowed_calling_aets": ["CT1"]},
        "spool_dir": str(tmp_path / "spool"),
        "quiet_time_s": 0.01,
        "app": {"script": str(script), "models": str(REPO / "models"), "timeout_s": timeout_s, "warm": warm},
        "destination": {"ae_title": "PACS", "host": "127.0.0.1", "port": 9, "retries": 0},
    }, tmp_path)
    return Worker(cfg, Spool(cfg.spool_dir))


def _spool_study(worker: Worker, tmp_path: Path, files: Optional[List[Path]] = None) -> str:
    if files is None:
        files = write_ct_series(tmp_path / "ct", 4)  # 16 x 16 pixels: no head in it
    for f in files:
        ds = dcmread(f)
        worker.spool.store_instance(str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), f.read_bytes())
    time.sleep(0.05)  # the quiet time (0.01 s)
    return str(ds.StudyInstanceUID)


@pytest.mark.slow
@pytest.mark.e2e
def test_app_failure_is_recorded_with_its_exit_code_and_error_line(tmp_path):
    w = _worker(tmp_path, timeout_s=300)
    uid = _spool_study(w, tmp_path)
    assert w.tick() is True
    st = w.spool.read_state(uid)
    assert st["state"] == "failed" and st["run"] == 1 and st["input_instances"] == 4
    assert isinstance(st["exit_code"], int) and st["exit_code"] != 0
    assert st["app_error"] and st["reason"].startswith(f"app exited with code {st['exit_code']}")
    assert (w.spool.run_dir(uid, 1) / "app.log").read_text().strip()
    assert len(w.spool.instances(uid)) == 4  # kept
    assert w.tick() is False  # failed studies wait for an admin, no retry loop
    w.spool.request_retry(uid)
    assert w.tick() is True and w.spool.read_state(uid)["run"] == 2


def test_app_timeout_kills_the_run_and_fails_the_study(tmp_path):
    w = _worker(tmp_path, timeout_s=0.5)  # importing the app alone takes longer
    uid = _spool_study(w, tmp_path)
    w.tick()
    st = w.spool.read_state(uid)
    assert st["state"] == "failed" and st["reason"] == "app timed out after 0 s"  # 0.5 s, rounded
    assert st["exit_code"] is None


FAKE_APP = '''
import argparse, json, pathlib
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
p = argparse.ArgumentParser(); p.add_argument("-i"); p.add_argument("-o"); p.add_argument("-m")
out = pathlib.Path(p.parse_args().o); (out / "dicom").mkdir(parents=True)
for name, cls in (("kos", "1.2.840.10008.5.1.4.1.1.88.59"), ("seg", "1.2.840.10008.5.1.4.1.1.66.4"),
                  ("sr", "1.2.840.10008.5.1.4.1.1.88.34")):
    ds = Dataset(); ds.file_meta = FileMetaDataset(); ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = cls, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = cls, ds.SOPInstanceUID
    ds.save_as(out / "dicom" / f"{name}.dcm", enforce_file_format=True)
(out / "aspects.json").write_text(json.dumps({"aspects": {"left": 7, "right": 10}}))
(out / "app.log").write_text("fake app")
'''


def test_the_key_object_selection_is_sent_after_the_objects_it_flags(tmp_path):
    script = tmp_path / "fake_app.py"
    script.write_text(FAKE_APP)
    w = _worker(tmp_path, timeout_s=60, script=script)
    uid = _spool_study(w, tmp_path)
    assert w.tick() is True
    st = w.spool.read_state(uid)
    assert [Path(r["file"]).name for r in st["results"]] == ["seg.dcm", "sr.dcm", "kos.dcm"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_warm_app_process_serves_study_after_study(tmp_path, phantom_case):
    """app.warm: one app process (atlas and models loaded once) runs two real studies to results,
    then a bad one fails with the app's exit code and error line, and the process goes on."""
    w = _worker(tmp_path, timeout_s=900, warm=True)
    try:
        uids = [_spool_study(w, tmp_path, sorted((phantom_case(seed, kind=kind) / "dicom").glob("*.dcm")))
                for seed, kind in ((31, "normal"), (7, "acute"))]
        pids = []
        for uid in uids:
            assert w.tick() is True
            st = w.spool.read_state(uid)
            assert st["exit_code"] == 0 and st["results"], st  # processed; the send to port 9 then fails
            assert (w.spool.run_dir(uid, 1) / "output" / "aspects.json").is_file()
            assert st["aspects"] is not None
            assert w._warm is not None and w._warm.proc is not None
            pids.append(w._warm.proc.pid)
        bad = _spool_study(w, tmp_path)
        assert w.tick() is True
        st = w.spool.read_state(bad)
        assert st["state"] == "failed" and st["exit_code"] not in (None, 0) and st["app_error"].startswith("error[")
        assert w._warm.proc is not None
        pids.append(w._warm.proc.pid)
        assert len(set(pids)) == 1  # one process for all three
        assert (w.spool.root / "warm_app.log").read_text().count("warm in ") == 1
    finally:
        w.stop()
    assert w._warm.proc is None  # stop() killed it


def test_a_warm_app_over_its_timeout_is_killed_and_the_study_failed(tmp_path):
    w = _worker(tmp_path, timeout_s=0.5, warm=True)  # loading the atlas and models alone takes longer
    uid = _spool_study(w, tmp_path)
    w.tick()
    st = w.spool.read_state(uid)
    assert st["state"] == "failed" and st["reason"] == "app timed out after 0 s" and st["exit_code"] is None
    assert w._warm is not None and w._warm.proc is None  # killed; the next study starts a fresh one


HANGING_APP = '''
import pathlib, sys, tempfile, time
left = pathlib.Path(tempfile.mkdtemp(prefix="aspects_reg_"))  # as a registration under way
(left / "lin0GenericAffine.mat").write_text("x")
pathlib.Path(sys.argv[-1]).write_text(str(left))
time.sleep(600)
'''


def test_a_killed_app_leaves_no_temporary_folder(tmp_path):
    """A cold run gets its own $TMPDIR in the run folder, removed when the run ends: the app
    killed at its time-out (as by SIGKILL: it cannot clean up) leaves nothing in /tmp."""
    script = tmp_path / "hanging_app.py"
    script.write_text(HANGING_APP)
    w = _worker(tmp_path, timeout_s=3, script=script)
    w.cfg.app.extra_args.append(str(tmp_path / "where.txt"))
    uid = _spool_study(w, tmp_path)
    w.tick()
    assert w.spool.read_state(uid)["reason"].startswith("app timed out")
    left = Path((tmp_path / "where.txt").read_text())
    assert left.parent == w.spool.run_dir(uid, 1) / "tmp"
    assert not left.parent.exists()


HANGING_SERVE = '''
import pathlib, sys, tempfile, time
sys.stdin.readline()
left = pathlib.Path(tempfile.mkdtemp(prefix="aspects_reg_"))
pathlib.Path(sys.argv[0]).with_name("where.txt").write_text(str(left))
time.sleep(600)
'''


def test_a_killed_warm_app_leaves_no_temporary_folder(tmp_path):
    from listener.warm_app import WarmApp

    fake = tmp_path / "fake_repo" / "aspects"  # `python -m aspects.serve` from the app's folder
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "serve.py").write_text(HANGING_SERVE)
    warm = WarmApp(fake.parent, tmp_path / "models", tmp_path / "spool" / "warm_app.log")
    assert warm.run(tmp_path / "in", tmp_path / "out", timeout_s=5) == (None, None)  # timed out, killed
    left = Path((fake / "where.txt").read_text())
    assert left.parent == warm.tmp_dir and not warm.tmp_dir.exists()
