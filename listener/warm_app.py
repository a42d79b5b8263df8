"""The app as one long-lived child process (``python -m aspects.serve --stdio``) for `app.warm`.

The child keeps the atlas, its aligned template and the models loaded between studies; each
study is one JSON request / reply (aspects/serve.py). It stays a separate process so that the
listener keeps what a cold run gives it: a study over `app.timeout_s` is killed (the whole
process group; the next study starts a fresh child), the child dies with the listener
(PR_SET_PDEATHSIG), and a crash of the app on one study never takes the listener down.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from aspects.errors import EXIT_INTERNAL

log = logging.getLogger("listener.warm_app")


class WarmApp:
    """``run(in_dir, out_dir, timeout_s)`` -> (exit code or None on time-out, one-line error).

    ``workdir``: the app's folder (the repository: ``-m aspects.serve`` imports from it);
    ``log_path``: the child's console log (appended; every study also has its own app.log in its
    output folder); ``preexec``: runs in the child before exec (the listener's PDEATHSIG).
    """

    def __init__(self, workdir: Path, models: Path, log_path: Path, preexec: Optional[Callable[[], None]] = None):
        self.workdir, self.models, self.log_path, self.preexec = Path(workdir), Path(models), Path(log_path), preexec
        self.proc: Optional[subprocess.Popen] = None
        self._buffer = b""

    @property
    def tmp_dir(self) -> Path:
        """The warm app's ``$TMPDIR`` (next to its log): emptied at each start and after a kill,
        so the temporary folders of a killed process (registrations under way) do not pile up."""
        return self.log_path.parent / "warm_app_tmp"

    def _start(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir()
        cmd = [sys.executable, "-m", "aspects.serve", "--stdio", "-m", str(self.models)]
        with open(self.log_path, "ab") as logf:
            proc = subprocess.Popen(cmd, cwd=str(self.workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=logf, start_new_session=True, preexec_fn=self.preexec,
                                    env=dict(os.environ, TMPDIR=str(self.tmp_dir)))
        log.info("warm app started (pid %d): %s", proc.pid, " ".join(cmd))
        self._buffer = b""
        return proc

    def run(self, in_dir: Path, out_dir: Path, timeout_s: float) -> Tuple[Optional[int], Optional[str]]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write((json.dumps({"input": str(in_dir), "output": str(out_dir)}) + "\n").encode())
            proc.stdin.flush()
        except BrokenPipeError:
            return self._died("the warm app exited before the request")
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return None, None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return self._died("the warm app exited during the study")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: Dict = json.loads(line)
        return int(reply["exit_code"]), reply.get("error")

    def _died(self, what: str) -> Tuple[Optional[int], Optional[str]]:
        code = self.proc.wait() if self.proc is not None else None
        self.proc = None
        return EXIT_INTERNAL, f"error[{EXIT_INTERNAL}]: internal error: {what} (exit {code}; see {self.log_path})"

    def close(self) -> None:
        """Kill the child and its process group (a time-out, the listener stopping)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
