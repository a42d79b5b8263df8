"""The output folder of one run: checked, locked, cleared of an earlier result, filled all at once.

- A path that is a file, or a folder that cannot be created or written, is a usage error (exit 2).
- A lock (``fcntl.flock`` on ``OUT/.aspects.lock``) admits one run per folder; a second run
  gets one line naming the first one's process (exit 9) and touches nothing.
- An earlier result (aspects.json, its DICOM/PNG/NIfTI files, error.json) is removed when the
  run starts, so a rerun replaces it whole: never an old aspects.json beside a new error.json.
  Only this app's own file names are removed; anything else in the folder is left alone.
- Results are written into ``OUT/.aspects-partial-<pid>/`` and moved into place at the end,
  aspects.json last, so nobody sees half a result. A run killed outright (SIGKILL) leaves only
  the partial folder, which the next run removes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import List, Optional

from aspects.errors import EXIT_USAGE, InputError
from aspects.file_lock import hold_lock

log = logging.getLogger(__name__)

LOCK_FILE = ".aspects.lock"
PARTIAL_PREFIX = ".aspects-partial-"
RESULT_JSON = "aspects.json"
ERROR_JSON = "error.json"
# Files a run writes (aspects.json's "outputs" names them too; both lists are removed on rerun).
RESULT_FILES = (RESULT_JSON, ERROR_JSON, "dicom/seg.dcm", "dicom/sr.dcm", "dicom/kos.dcm", "dicom/key_bg.dcm",
                "dicom/key_sg.dcm", "png/key_bg.png", "png/key_sg.png", "nifti/infarct.nii.gz", "nifti/regions.nii.gz",
                # a located finding's key image and the findings' labels (aspects.key_images, aspects.outputs)
                "dicom/key_haemorrhage.dcm", "dicom/key_old_infarct.dcm", "dicom/key_outside_mca.dcm",
                "png/key_haemorrhage.png", "png/key_old_infarct.png", "png/key_outside_mca.png", "nifti/findings.nii.gz")
RESULT_DIRS = ("dicom", "png", "nifti")


def inside(output_dir: Path, input_dir: Path) -> bool:
    """True when ``output_dir`` is ``input_dir`` or lies inside it."""
    inp, out = Path(input_dir).resolve(), Path(output_dir).resolve()
    return out == inp or inp in out.parents


class OutputFolder:
    """One run's output folder (module docstring): :meth:`open`, :meth:`start_partial`, then
    :meth:`commit` or :meth:`fail`, and :meth:`release`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self.partial = self.path / f"{PARTIAL_PREFIX}{os.getpid()}"

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def prepare(self) -> None:
        """Create the folder; a file in its place or an unwritable folder is a usage error."""
        if self.path.exists() and not self.path.is_dir():
            raise InputError(EXIT_USAGE, f"output path {self.path} is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(EXIT_USAGE, f"cannot create the output folder {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise InputError(EXIT_USAGE, f"the output folder {self.path} is not writable")

    def open(self, input_dir: Optional[Path] = None) -> None:
        """Check the folder (never inside ``input_dir``), create it, lock it and clear an earlier result."""
        if input_dir is not None and inside(self.path, input_dir):
            raise InputError(EXIT_USAGE, f"output folder {self.path} must not be inside the input folder {input_dir}")
        self.prepare()
        self.lock()
        self.clear_previous()

    def lock(self) -> None:
        """Hold the folder's lock until :meth:`release` or the end of this process (the OS releases it)."""
        self._lock_fd = hold_lock(self.path / LOCK_FILE,
                                  f"the output folder {self.path} is in use by another run of this app (pid {{pid}}); "
                                  "wait for it to finish or choose another output folder")

    def release(self) -> None:
        """Give the lock up (a process that runs many studies, one after the other)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def fail(self, code: int, line: str, **extra) -> None:
        """A failed run: partial results discarded, error.json written (only in a folder this run holds)."""
        if self.locked:
            self.discard()
            self.write_error(code, line, **extra)

    def _earlier_outputs(self) -> List[str]:
        """Files named by an earlier aspects.json (its "outputs"), relative to the folder."""
        try:
            outputs = json.loads((self.path / RESULT_JSON).read_text()).get("outputs") or {}
        except (OSError, ValueError, AttributeError):
            return []
        names: List[str] = []
        for value in outputs.values():
            items = value.values() if isinstance(value, dict) else (value if isinstance(value, list) else [value])
            names += [str(v) for v in items if isinstance(v, str) and ".." not in Path(v).parts and not v.startswith("/")]
        return names

    def clear_previous(self) -> List[str]:
        """Remove an earlier run's result and partial folders; returns what was removed."""
        removed = []
        for rel in sorted(set(self._earlier_outputs()) | set(RESULT_FILES)):
            p = self.path / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(rel)
        for d in RESULT_DIRS:
            try:
                (self.path / d).rmdir()  # only when empty: other people's files stay
            except OSError:
                pass
        for stale in self.path.glob(PARTIAL_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale.name + "/")
        if removed:
            log.info("output folder %s: removed the earlier result (%s)", self.path, ", ".join(removed))
        return removed

    def start_partial(self) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial

    def commit(self) -> List[str]:
        """Move every file of the partial folder into place (aspects.json last); returns them."""
        files = sorted((p for p in self.partial.rglob("*") if p.is_file()),
                       key=lambda p: (p.name == RESULT_JSON, str(p)))
        moved = []
        for p in files:
            rel = p.relative_to(self.partial)
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
            moved.append(rel.as_posix())
        shutil.rmtree(self.partial, ignore_errors=True)
        return moved

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)

    def write_error(self, code: int, line: str, **extra) -> None:
        """error.json (exit code, the one-line message and ``extra``); never raises."""
        try:
            tmp = self.path / f".{ERROR_JSON}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps({"exit_code": code, "message": line, **extra}, indent=2) + "\n")
            os.replace(tmp, self.path / ERROR_JSON)
        except OSError:
            pass
