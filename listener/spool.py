"""The on-disk spool: every received instance and every job state lives here, nothing in memory.

Layout (docs/deployment.md):

    SPOOL/<StudyInstanceUID>/incoming/<SOPInstanceUID>.dcm   received instances
    SPOOL/<StudyInstanceUID>/state.json                      job state (written by the worker only)
    SPOOL/<StudyInstanceUID>/runs/<n>/input/                 hard links: the instances run <n> saw
    SPOOL/<StudyInstanceUID>/runs/<n>/output/                the app's output folder (-o)
    SPOOL/<StudyInstanceUID>/runs/<n>/app.log                the app's stdout + stderr
    SPOOL/<StudyInstanceUID>/retry                           admin request: run / send again
    SPOOL/rejected/<time>_<callingAE>_<reason>.dcm (+ .txt)  refused instances, kept for inspection

Writes are durable before they are acknowledged: temp file in the same folder, fsync, atomic
rename, fsync of the folder. A crash leaves either the old file or the new one, never a torn one;
temp files start with '.' and are ignored (and removed at start-up).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

REJECTED = "rejected"
STATE_FILE = "state.json"
RETRY_FILE = "retry"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")



class JobState(StrEnum):
    """A study's job state in state.json, in order. SENDING: the app finished and its results are
    complete on disk, so a restart sends what is left without running the app again (new UIDs
    would duplicate results in the PACS)."""

    RECEIVED = "received"
    PROCESSING = "processing"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


RECEIVED, PROCESSING, SENDING, SENT, FAILED = JobState


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_uid(value: object) -> bool:
    """A syntactically valid DICOM UID (also what makes it safe as a file name)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves a complete file or none."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing each new folder's parent so the folder entry survives a crash."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # another association created it at the same moment
            pass
        fsync_dir(d.parent)


@dataclass
class Spool:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # --- instances -------------------------------------------------------------------------
    def study_dir(self, study_uid: str) -> Path:
        if not is_uid(study_uid):
            raise ValueError(f"not a DICOM UID: {study_uid!r}")
        return self.root / study_uid

    def incoming_dir(self, study_uid: str) -> Path:
        return self.study_dir(study_uid) / "incoming"

    def store_instance(self, study_uid: str, sop_uid: str, data: bytes) -> tuple[Path, bool]:
        """Durably store one instance; returns (path, True if this SOP instance is new)."""
        if not is_uid(sop_uid):
            raise ValueError(f"not a DICOM UID: {sop_uid!r}")
        folder = self.incoming_dir(study_uid)
        _makedirs_durable(folder)
        path = folder / f"{sop_uid}.dcm"
        new = not path.exists()
        atomic_write(path, data)
        return path, new

    def instances(self, study_uid: str) -> List[Path]:
        folder = self.incoming_dir(study_uid)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and not p.name.startswith("."))

    def last_arrival(self, study_uid: str) -> float:
        """Time of the newest instance on disk (survives restarts, unlike an in-memory clock)."""
        times = [p.stat().st_mtime for p in self.instances(study_uid)]
        return max(times) if times else 0.0

    def reject(self, data: bytes, calling_aet: str, reason: str, detail: str) -> Path:
        folder = self.root / REJECTED
        _makedirs_durable(folder)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        safe_ae = re.sub(r"[^A-Za-z0-9_-]", "_", calling_aet.strip()) or "unknown"
        stem = f"{stamp}_{safe_ae}_{reason}_{uuid.uuid4().hex[:8]}"
        atomic_write(folder / f"{stem}.txt", (detail + "\n").encode())
        atomic_write(folder / f"{stem}.dcm", data)
        return folder / f"{stem}.dcm"

    def rejected(self) -> List[Path]:
        folder = self.root / REJECTED
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def studies(self) -> List[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_uid(p.name))

    def remove_temp_files(self) -> int:
        """Temp files left by a crash mid-write (never acknowledged, so safe to delete)."""
        n = 0
        if self.root.is_dir():
            for tmp in self.root.glob("**/.*.tmp"):
                tmp.unlink(missing_ok=True)
                n += 1
        return n

    # --- job state -------------------------------------------------------------------------
    def read_state(self, study_uid: str) -> Optional[Dict[str, Any]]:
        path = self.study_dir(study_uid) / STATE_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def write_state(self, study_uid: str, state: Dict[str, Any]) -> None:
        state["updated"] = now_iso()
        atomic_write(self.study_dir(study_uid) / STATE_FILE, json.dumps(state, indent=1).encode())

    def request_retry(self, study_uid: str) -> None:
        if not self.study_dir(study_uid).is_dir():
            raise FileNotFoundError(f"no study {study_uid} in the spool {self.root}")
        atomic_write(self.study_dir(study_uid) / RETRY_FILE, now_iso().encode())

    def take_retry(self, study_uid: str) -> bool:
        path = self.study_dir(study_uid) / RETRY_FILE
        if path.exists():
            path.unlink()
            return True
        return False

    def run_dir(self, study_uid: str, run: int) -> Path:
        return self.study_dir(study_uid) / "runs" / str(run)

    def iter_status(self) -> Iterator[Dict[str, Any]]:
        """One summary row per study, for --status and the tests."""
        for uid in self.studies():
            st = self.read_state(uid) or {}
            yield {
                "study_uid": uid,
                "state": st.get("state", RECEIVED),
                "instances": len(self.instances(uid)),
                "run": st.get("run", 0),
                "results": len(st.get("results", [])),
                "sent": len(st.get("sent", {})),
                "reason": st.get("reason"),
                "updated": st.get("updated") or _mtime_iso(self.study_dir(uid)),
            }


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
