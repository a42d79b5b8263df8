"""One process at a time per folder: an exclusive, non-blocking ``flock`` held until exit."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from aspects.errors import EXIT_BUSY, EXIT_USAGE, InputError


def hold_lock(path: Path, busy: str) -> int:
    """Lock ``path`` (created if needed) for the life of this process; returns the descriptor.

    When another process holds it: InputError (exit 9) with ``busy`` formatted with that
    process's pid (``{pid}``), which the holder writes into the file. The OS releases the lock
    when the holder exits, however it exits (no stale lock after a crash).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(EXIT_USAGE, f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InputError(EXIT_BUSY, busy.replace("{pid}", holder)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
