"""Real DICOM servers for the listener tests and aspects-robustness: Orthanc (the PACS), the listener, dcmtk tools.

Everything listens on 127.0.0.1 on ports picked free by the OS; each server gets its own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
# dcmtk from the system, not pynetdicom's same-named scripts in the venv's bin.
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin"
ORTHANC_BIN = shutil.which("Orthanc", path=_SYSTEM_PATH)
STORESCU = shutil.which("storescu", path=_SYSTEM_PATH)
ECHOSCU = shutil.which("echoscu", path=_SYSTEM_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while True:
        val = pred()
        if val:
            return val
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Orthanc:
    """An Orthanc PACS in `folder`, AET `aet`, DICOM and HTTP on free ports of 127.0.0.1."""

    def __init__(self, folder: Path, aet: str = "ORTHANC", modalities: Optional[Dict[str, list]] = None,
                 dicom_port: Optional[int] = None):
        if ORTHANC_BIN is None:
            raise RuntimeError("the Orthanc binary is not installed (apt-get install orthanc)")
        self.folder, self.aet = Path(folder), aet
        self.dicom_port, self.http_port = dicom_port or free_port(), free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "aspects-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": True,
            "DicomModalities": modalities or {},
            "StorageCompression": False,
            "Plugins": [],
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 4,
            "DicomThreadsCount": 2,
        }
        self.config_path = self.folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log_path = self.folder / "orthanc.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([ORTHANC_BIN, str(self.config_path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        try:
            wait_for(self._up, 30, "Orthanc to start")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"Orthanc did not start: {self.log_path.read_text()[-2000:]}") from None

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {self.log_path.read_text()[-2000:]}")
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload: Any) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def instances(self, study_uid: Optional[str] = None) -> List[Dict[str, str]]:
        """Every stored instance: {'id', 'sop_instance_uid', 'sop_class_uid', 'study_uid'}."""
        query = {"StudyInstanceUID": study_uid} if study_uid else {}
        found = self.post("/tools/find", {"Level": "Instance", "Query": query, "Expand": True})
        out = []
        for inst in found:
            tags = self.get(f"/instances/{inst['ID']}/simplified-tags")
            out.append({"id": inst["ID"], "sop_instance_uid": tags.get("SOPInstanceUID"),
                        "sop_class_uid": tags.get("SOPClassUID"), "study_uid": tags.get("StudyInstanceUID")})
        return out

    def file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Listener:
    """`python -m listener` as a subprocess with a config written from `settings`."""

    def __init__(self, folder: Path, settings: Dict[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.port = settings["listener"]["port"]
        self.ae_title = settings["listener"]["ae_title"]
        self.config_path = self.folder / "listener.yaml"
        self.config_path.write_text(yaml.safe_dump(settings))
        self.spool = Path(settings["spool_dir"])
        self.log_path = self.folder / "listener.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Listener:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "listener", "--config", str(self.config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        wait_for(self._up, 30, "the listener to accept associations")
        return self

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"listener exited with {self.proc.returncode}: {self.log()[-2000:]}")
        return "listening as AE" in self.log() and echo(self.port, self.ae_title, "TESTSCU") == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, exactly like a crash or a power cut."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._log.close()

    def state(self, study_uid: str) -> Dict[str, Any]:
        p = self.spool / study_uid / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def status(self) -> str:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        r = subprocess.run([sys.executable, "-m", "listener", "--config", str(self.config_path), "--status"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
        return r.stdout + r.stderr


def listener_settings(spool: Path, port: int, dest: Orthanc | None, *, quiet_time_s: float = 2.0,
                      models: Path | None = None, timeout_s: float = 300, calling=("TESTSCU",),
                      retries: int = 2, backoff_s: float = 0.5) -> Dict[str, Any]:
    return {
        "listener": {"ae_title": "ASPECTS", "host": "127.0.0.1", "port": port,
                     "allowed_calling_aets": list(calling), "network_timeout_s": 30},
        "spool_dir": str(spool),
        "quiet_time_s": quiet_time_s,
        "poll_s": 0.2,
        "app": {"script": str(REPO / "app.py"), "models": str(models or REPO / "models"), "timeout_s": timeout_s},
        "destination": {"ae_title": dest.aet if dest else "NOWHERE", "host": "127.0.0.1",
                        "port": dest.dicom_port if dest else free_port(), "retries": retries,
                        "backoff_s": backoff_s, "max_backoff_s": 4, "timeout_s": 10},
    }


def storescu(port: int, files: List[Path], called: str = "ASPECTS", calling: str = "TESTSCU",
             timeout: float = 120) -> subprocess.CompletedProcess:
    """dcmtk storescu, one association for all files; returns the completed process (-v log)."""
    return subprocess.run([STORESCU, "-v", "-aet", calling, "-aec", called, "-to", "20", "-ta", "20", "-td", "20",
                           "127.0.0.1", str(port), *map(str, files)], capture_output=True, text=True, timeout=timeout)


def echo(port: int, called: str, calling: str) -> int:
    r = subprocess.run([ECHOSCU, "-aet", calling, "-aec", called, "-to", "5", "127.0.0.1", str(port)],
                       capture_output=True, timeout=30)
    return r.returncode
