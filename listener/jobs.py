"""The worker: one study at a time, app as a subprocess, then C-STORE of the results.

State per study (SPOOL/<study>/state.json, written only by this thread, atomically):
    received -> processing -> sending -> sent
                    |            |
                    +-> failed <-+      (reason, app exit code, the app's one-line error)
On start-up and on every poll the spool is the truth: a study left in `processing` (crash, kill,
power cut) is run again; one in `sending` has complete results and only the SOP instances not yet
acknowledged by the PACS are sent (a re-run would mint new UIDs and duplicate results in the PACS).
`failed` studies stay in the spool until an admin requests a retry (`--retry UID`) or new
instances of the study arrive.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .config import ListenerConfig
from .sender import SendError, file_identity, send_files
from .spool import FAILED, PROCESSING, RECEIVED, SENDING, SENT, JobState, Spool, now_iso
from .warm_app import WarmApp

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"

log = logging.getLogger("listener.jobs")



class Action(StrEnum):
    """What the worker does with a study next (:func:`next_action`)."""

    RUN = "run"  # run the app on a snapshot of the study
    SEND = "send"  # send (the rest of) its results
    WAIT = "wait"  # nothing now: more instances may come, or an admin must ask for a retry


RUN, SEND, WAIT = Action


def next_action(state: Optional[Dict[str, Any]], n_instances: int, quiet_for_s: float,
                quiet_time_s: float, retry_requested: bool) -> Action:
    """What the worker should do with a study now (pure: the decision table, tested alone)."""
    st = (state or {}).get("state", RECEIVED)
    quiet = n_instances > 0 and quiet_for_s >= quiet_time_s
    if st == SENDING:
        return SEND
    if st in (RECEIVED, PROCESSING):
        return RUN if quiet else WAIT
    new_instances = n_instances > int((state or {}).get("input_instances", 0))
    if st == FAILED and retry_requested:
        results_ready = bool((state or {}).get("results")) and (state or {}).get("exit_code") == 0
        return SEND if results_ready else (RUN if n_instances else WAIT)
    if st in (SENT, FAILED) and new_instances and quiet:
        return RUN
    return WAIT


def app_error_line(log_text: str) -> Optional[str]:
    """The app's one-line error (`error[<code>]: ...`), else the last non-empty line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error[")]
    if errors:
        return errors[-1]
    return lines[-1][-500:] if lines else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the app if the listener dies (else an orphan keeps writing)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class Worker(threading.Thread):
    def __init__(self, cfg: ListenerConfig, spool: Spool):
        super().__init__(name="worker", daemon=True)
        self.cfg, self.spool = cfg, spool
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._proc_lock = threading.Lock()
        self._settled: Dict[Path, Tuple[int, int]] = {}  # finished studies: (state, incoming) mtimes
        self._warm: Optional[WarmApp] = None
        if cfg.app.warm:
            self._warm = WarmApp(cfg.app.script.parent, cfg.app.models, spool.root / "warm_app.log", _die_with_parent)

    # --- control ------------------------------------------------------------------------
    def notify(self, study_uid: str, new: bool) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        with self._proc_lock:
            if self._proc is not None and self._proc.poll() is None:
                log.warning("stopping: killing the running app (pid %d); the study will run again at start-up",
                            self._proc.pid)
                os.killpg(self._proc.pid, signal.SIGKILL)
            if self._warm is not None:
                self._warm.close()
        if self.is_alive():  # a worker driven by tick() alone was never started
            self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.tick()
            except Exception:  # keep serving: one bad study must not stop the service
                log.exception("worker error (the service keeps running)")
                worked = False
            if not worked:
                self._wake.wait(self.cfg.poll_s)
                self._wake.clear()

    # --- one step -----------------------------------------------------------------------
    def pending(self) -> List[Tuple[float, str, Action]]:
        """(last arrival, study, action) for every study with something to do, oldest first."""
        out = []
        now = time.time()
        for uid in self.spool.studies():
            sdir = self.spool.study_dir(uid)
            retry = sdir.joinpath("retry").exists()
            if not retry and _settled(sdir, self._settled):
                continue  # finished, nothing new since: cheap skip for a spool with many old studies
            state = self.spool.read_state(uid)
            last = self.spool.last_arrival(uid)
            action = next_action(state, len(self.spool.instances(uid)), now - last, self.cfg.quiet_time_s, retry)
            if action != WAIT:
                out.append((last, uid, action))
        return sorted(out)

    def tick(self) -> bool:
        """Do the next job, if any; True when something was done."""
        todo = self.pending()
        if not todo:
            return False
        _, uid, action = todo[0]
        if len(todo) > 1:
            log.info("queue: %d more study/studies waiting", len(todo) - 1)
        retried = self.spool.take_retry(uid)
        if retried:
            log.info("study %s: retry requested by an admin", uid)
        try:
            if action == RUN and not self.process(uid):
                return True
            self.send(uid)
        except Exception as exc:  # unreadable results, spool errors: fail the study, not the service
            log.exception("study %s: listener error", uid)
            st = self._state(uid)
            if st["state"] != FAILED and not self._stopping.is_set():
                st["reason"] = f"listener error: {type(exc).__name__}: {exc}"
                self._set(uid, st, FAILED, st["reason"])
        return True

    def _state(self, uid: str) -> Dict[str, Any]:
        return self.spool.read_state(uid) or {"study_uid": uid, "state": RECEIVED, "run": 0, "history": []}

    def _set(self, uid: str, st: Dict[str, Any], new_state: JobState, note: str) -> None:
        st["state"] = new_state
        st.setdefault("history", []).append({"time": now_iso(), "state": new_state, "note": note})
        self.spool.write_state(uid, st)

    def process(self, uid: str) -> bool:
        """Run the app on a snapshot of the study; True when its results are ready to send."""
        st = self._state(uid)
        if st["state"] == PROCESSING:
            log.warning("study %s: run %d was interrupted (listener stopped or crashed); running again",
                        uid, st.get("run", 0))
        run = int(st.get("run", 0)) + 1
        rdir = self.spool.run_dir(uid, run)
        if rdir.exists():  # left by a crash before the state was written
            shutil.rmtree(rdir)
        in_dir, out_dir = rdir / "input", rdir / "output"
        in_dir.mkdir(parents=True)
        instances = self.spool.instances(uid)
        for p in instances:  # a snapshot: instances arriving during the run do not change its input
            _link_or_copy(p, in_dir / p.name)
        st.update(run=run, input_instances=len(instances), results=[], sent={}, reason=None,
                  exit_code=None, app_error=None, started=now_iso())
        self._set(uid, st, PROCESSING, f"run {run} on {len(instances)} instances")
        log.info("study %s: processing run %d on %d instance(s)", uid, run, len(instances))

        t0 = time.monotonic()
        code = self._run_warm(in_dir, out_dir, rdir) if self._warm is not None else self._run_cold(uid, st, in_dir,
                                                                                                   out_dir, rdir)
        app = self.cfg.app
        elapsed = time.monotonic() - t0
        if self._stopping.is_set():
            return False  # killed by stop(): stays `processing`, runs again at start-up
        text = (rdir / "app.log").read_text(errors="replace")
        if code is None:
            return self._fail(uid, st, f"app timed out after {app.timeout_s:.0f} s", None, None)
        if code != 0:
            return self._fail(uid, st, f"app exited with code {code} after {elapsed:.0f} s", code,
                              app_error_line(text))
        results = sorted((out_dir / "dicom").glob("*.dcm")) if (out_dir / "dicom").is_dir() else []
        if not results or not (out_dir / "aspects.json").is_file():
            return self._fail(uid, st, "app exited 0 but wrote no aspects.json or no DICOM results", code, None)
        st["exit_code"] = 0
        st["results"] = []
        for f in results:
            sop, cls, _ = file_identity(f)
            st["results"].append({"file": str(f.relative_to(self.spool.study_dir(uid))), "sop_instance_uid": sop,
                                  "sop_class_uid": cls})
        # Key object selections last, after the instances they flag (a PACS may resolve them on receipt).
        st["results"].sort(key=lambda r: r["sop_class_uid"] == KEY_OBJECT_SELECTION)
        st["aspects"] = _aspects_summary(out_dir / "aspects.json")
        self._set(uid, st, SENDING, f"app finished in {elapsed:.0f} s, {len(results)} result file(s)")
        log.info("study %s: app finished in %.0f s (exit 0), %d DICOM result(s)%s", uid, elapsed, len(results),
                 f", ASPECTS {st['aspects']}" if st.get("aspects") is not None else "")
        return True

    def _run_cold(self, uid: str, st: Dict[str, Any], in_dir: Path, out_dir: Path, rdir: Path) -> Optional[int]:
        """``python app.py`` on the study: its exit code, None when it timed out or stop() killed it
        (rdir/app.log: its console)."""
        app = self.cfg.app
        cmd = [sys.executable, str(app.script), "-i", str(in_dir), "-o", str(out_dir), "-m", str(app.models),
               *app.extra_args]
        # The app's temporary files (the registrations' transform folders) go to a folder of this
        # run, removed when the run ends however it ends: a SIGKILLed app cannot clean up itself.
        tmp = rdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = dict(os.environ, TMPDIR=str(tmp))
        with open(rdir / "app.log", "wb") as logf:
            with self._proc_lock:
                if self._stopping.is_set():
                    return None
                self._proc = subprocess.Popen(cmd, cwd=str(app.script.parent), stdin=subprocess.DEVNULL,
                                              stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=_die_with_parent, env=env)
            st["app_pid"] = self._proc.pid  # for admins; the app dies with the listener (PDEATHSIG)
            self.spool.write_state(uid, st)
            try:
                code = self._proc.wait(timeout=app.timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
                code = None
            finally:
                with self._proc_lock:
                    self._proc = None
                shutil.rmtree(tmp, ignore_errors=True)
            return code

    def _run_warm(self, in_dir: Path, out_dir: Path, rdir: Path) -> Optional[int]:
        """The study through the warm app process (app.warm): its exit code, None when it timed
        out or stop() killed it (rdir/app.log: the app's one-line error or the result folder)."""
        assert self._warm is not None
        with self._proc_lock:
            if self._stopping.is_set():
                return None
        code, line = self._warm.run(in_dir, out_dir, self.cfg.app.timeout_s)
        (rdir / "app.log").write_text((line or f"done: {out_dir / 'aspects.json'}") + "\n"
                                      f"(warm app process; its log: {self.spool.root / 'warm_app.log'}, this "
                                      f"study's: {out_dir / 'app.log'})\n")
        return code

    def _fail(self, uid: str, st: Dict[str, Any], reason: str, code: Optional[int], line: Optional[str]) -> bool:
        st.update(reason=reason, exit_code=code, app_error=line)
        self._set(uid, st, FAILED, reason)
        log.error("study %s: FAILED: %s%s (kept in the spool: %s)", uid, reason, f": {line}" if line else "",
                  self.spool.study_dir(uid))
        return False

    def send(self, uid: str) -> None:
        st = self._state(uid)
        if st["state"] != SENDING:
            self._set(uid, st, SENDING, "retry: sending the results again")
        files = [self.spool.study_dir(uid) / r["file"] for r in st["results"]]
        sent = st.setdefault("sent", {})
        dest = self.cfg.destination

        def record(sop: str) -> None:  # durable before the next C-STORE
            sent[sop] = now_iso()
            self.spool.write_state(uid, st)

        todo = len(files) - sum(1 for r in st["results"] if r["sop_instance_uid"] in sent)
        log.info("study %s: sending %d result(s) to %s@%s:%d", uid, todo, dest.ae_title, dest.host, dest.port)
        try:
            send_files(files, dest, self.cfg.ae_title, record, already_sent=set(sent),
                       sleep=lambda s: self._stopping.wait(s))
        except SendError as exc:
            if self._stopping.is_set():
                log.warning("study %s: stopping while sending; the rest is sent at start-up", uid)
                return
            st.update(reason=f"sending failed: {exc}")
            self._set(uid, st, FAILED, st["reason"])
            log.error("study %s: FAILED to send: %s (results kept; `--retry %s` sends them again)", uid, exc, uid)
            return
        self._set(uid, st, SENT, f"{len(sent)} result(s) stored by {dest.ae_title}")
        log.info("study %s: sent: %d result(s) stored by %s", uid, len(sent), dest.ae_title)


def _settled(study_dir: Path, cache: Dict[Path, Tuple[int, int]]) -> bool:
    """True when the study is sent/failed and no instance was added since its state was written."""
    try:
        stamp = ((study_dir / "state.json").stat().st_mtime_ns, (study_dir / "incoming").stat().st_mtime_ns)
    except FileNotFoundError:
        return False
    if cache.get(study_dir) == stamp:
        return True
    if stamp[1] > stamp[0]:
        return False
    if json.loads((study_dir / "state.json").read_text()).get("state") in (SENT, FAILED):
        cache[study_dir] = stamp
        return True
    return False


def _aspects_summary(path: Path) -> Optional[Any]:
    """The score(s) from aspects.json for the log and --status (whatever the schema calls them)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for key in ("aspects", "score", "aspects_score"):
        if key in data:
            return data[key]
    return None
