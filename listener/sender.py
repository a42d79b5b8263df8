"""C-STORE of result files to the destination AE, with retries and exponential backoff.

`on_sent(sop_uid)` is called after each success status, before the next file is sent: the caller
records it durably, so a restart sends only what the PACS has not acknowledged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import AbstractSet, Callable, Dict, List, Sequence, Set, Tuple

from pydicom import dcmread
from pynetdicom import AE

from .config import Destination

log = logging.getLogger("listener.sender")

# Success and the warning statuses after which the PACS has stored the instance.
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class SendError(Exception):
    """Sending failed after every retry; the message says why (for the job state)."""


def file_identity(path: Path) -> Tuple[str, str, str]:
    """(SOPInstanceUID, SOPClassUID, TransferSyntaxUID) of a DICOM file, without reading pixels."""
    ds = dcmread(path, stop_before_pixels=True)
    ts = ds.file_meta.TransferSyntaxUID if "TransferSyntaxUID" in ds.file_meta else "1.2.840.10008.1.2.1"
    return str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ts)


def backoff_delays(retries: int, first_s: float, max_s: float) -> List[float]:
    """Waits before retry 1..retries: first_s, 2*first_s, 4*first_s ... capped at max_s."""
    return [min(max_s, first_s * 2**k) for k in range(retries)]


def _send_once(files: Sequence[Path], ids: Dict[Path, Tuple[str, str, str]], dest: Destination,
               calling_aet: str, on_sent: Callable[[str], None]) -> List[str]:
    """One association; returns the problems (empty when every file was stored)."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    contexts: Dict[str, Set[str]] = {}
    for f in files:
        _, cls, ts = ids[f]
        contexts.setdefault(cls, set()).add(ts)
    for cls, tss in contexts.items():
        ae.add_requested_context(cls, sorted(tss))
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no connection"
        return [f"association with {dest.ae_title}@{dest.host}:{dest.port} failed ({why})"]
    problems = []
    try:
        for f in files:
            sop, cls, _ = ids[f]
            status = assoc.send_c_store(f)
            code = getattr(status, "Status", None)
            if code in _STORED:
                on_sent(sop)
            else:
                what = "no response" if code is None else f"status 0x{code:04X}"
                problems.append(f"{f.name}: {what}")
                if not assoc.is_established:
                    problems.append("association lost")
                    break
    finally:
        if assoc.is_established:
            assoc.release()
    return problems


def send_files(files: Sequence[Path], dest: Destination, calling_aet: str,
               on_sent: Callable[[str], None], already_sent: AbstractSet[str] = frozenset(),
               sleep: Callable[[float], object] = time.sleep) -> int:
    """Send every file whose SOP instance is not in `already_sent`; returns how many were sent.

    Raises SendError when files remain unsent after 1 + dest.retries attempts.
    """
    sent: Set[str] = set(already_sent)
    ids = {Path(f): file_identity(Path(f)) for f in files}
    todo = list(ids)
    n_sent = 0

    def mark(sop: str) -> None:
        nonlocal n_sent
        sent.add(sop)
        n_sent += 1
        on_sent(sop)

    delays = backoff_delays(dest.retries, dest.backoff_s, dest.max_backoff_s)
    problems: List[str] = []
    for attempt in range(len(delays) + 1):
        todo = [f for f in todo if ids[f][0] not in sent]
        if not todo:
            return n_sent
        if attempt:
            log.warning("send to %s: attempt %d/%d failed (%s); retrying in %.0f s", dest.ae_title, attempt,
                        len(delays) + 1, "; ".join(problems), delays[attempt - 1])
            sleep(delays[attempt - 1])
        try:
            problems = _send_once(todo, ids, dest, calling_aet, mark)
        except (OSError, RuntimeError, ValueError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
    todo = [f for f in todo if ids[f][0] not in sent]
    if not todo:
        return n_sent
    raise SendError(f"{len(todo)} file(s) not stored by {dest.ae_title}@{dest.host}:{dest.port} after "
                    f"{len(delays) + 1} attempts: {'; '.join(problems)}")
