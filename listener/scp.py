"""The Storage SCP: C-ECHO and C-STORE of CT images into the durable spool.

Only CT Image Storage from the allowed calling AE titles is accepted, in every transfer syntax an
installed decoder reads (so the app can read every instance acknowledged); success is returned
only after the instance is fsynced in the spool. What a sender sees on refusal: docs/deployment.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, List, Optional, Tuple

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from .config import ListenerConfig
from .spool import Spool, is_uid

log = logging.getLogger("listener.scp")

_NATIVE = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
_COMPRESSED = [JPEGLosslessSV1, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000,
               RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit]


def decodable_syntaxes() -> List[UID]:
    """Uncompressed syntaxes plus the compressed ones an installed pydicom decoder reads."""
    return _NATIVE + [ts for ts in _COMPRESSED if get_decoder(ts).is_available]


TRANSFER_SYNTAXES = decodable_syntaxes()
# A sender puts the data set right behind the C-STORE command; none within this time means none
# is coming (pynetdicom would wait for it until the association's network timeout).
EMPTY_DATASET_WAIT_S = 2.0

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC210


def check_instance(ds: Dataset, transfer_syntax: str, affected_sop_uid: str) -> Optional[Tuple[int, str, str]]:
    """Why a received CT instance cannot be spooled: (status, short reason, detail) or None."""
    if ds.get("SOPClassUID") != CTImageStorage:
        return STATUS_DATASET_MISMATCH, "not-ct", f"SOPClassUID {ds.get('SOPClassUID')} is not CT Image Storage"
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not is_uid(str(ds.get(kw, "")).strip("\0 ")):
            return STATUS_DATASET_MISMATCH, "missing-uid", f"{kw} missing or not a valid UID: {ds.get(kw)!r}"
    if str(ds.SOPInstanceUID) != str(affected_sop_uid):
        return STATUS_DATASET_MISMATCH, "uid-mismatch", (
            f"SOPInstanceUID {ds.SOPInstanceUID} differs from the request's {affected_sop_uid}")
    if "PixelData" not in ds:
        return STATUS_DATASET_MISMATCH, "no-pixels", "no Pixel Data"
    for kw in ("Rows", "Columns", "BitsAllocated"):
        if not isinstance(ds.get(kw), int) or ds.get(kw) <= 0:
            return STATUS_DATASET_MISMATCH, "no-geometry", f"{kw} missing or invalid"
    if transfer_syntax in _NATIVE:
        need = ds.Rows * ds.Columns * ds.BitsAllocated // 8 * int(ds.get("SamplesPerPixel", 1))
        need *= int(ds.get("NumberOfFrames", 1) or 1)
        if len(ds.PixelData) < need:
            return STATUS_DATASET_MISMATCH, "truncated", f"Pixel Data has {len(ds.PixelData)} bytes, needs {need}"
    return None


class StorageSCP:
    """pynetdicom AE with our handlers; `on_stored(study_uid, new)` wakes the worker."""

    def __init__(self, cfg: ListenerConfig, spool: Spool, on_stored: Callable[[str, bool], None]):
        self.cfg, self.spool, self.on_stored = cfg, spool, on_stored
        self._lock = threading.Lock()
        self._counts: Dict[int, Dict[str, int]] = {}  # per association: study -> stored count
        self._refused: Dict[int, int] = {}
        ae = AE(ae_title=cfg.ae_title)
        ae.add_supported_context(Verification)
        ae.add_supported_context(CTImageStorage, TRANSFER_SYNTAXES)
        ae.require_calling_aet = list(cfg.allowed_calling_aets)
        ae.require_called_aet = True  # a sender configured for another node is refused, not served
        ae.maximum_associations = cfg.max_associations
        ae.network_timeout = cfg.network_timeout_s
        ae.dimse_timeout = cfg.network_timeout_s
        ae.acse_timeout = cfg.network_timeout_s
        self.ae = ae
        self.server: Optional[ThreadedAssociationServer] = None

    @staticmethod
    def _peer(event) -> str:
        r = event.assoc.requestor
        return f"{r.ae_title.strip()}@{r.address}:{r.port}"

    def _on_requested(self, event) -> None:
        rq = event.assoc.requestor.primitive
        calling, called = rq.calling_ae_title.strip(), rq.called_ae_title.strip()
        if calling not in self.cfg.allowed_calling_aets:
            log.warning("association from %s (%s) REFUSED: calling AE title %r is not in allowed_calling_aets",
                        calling, event.assoc.requestor.address, calling)
        elif called != self.cfg.ae_title:
            log.warning("association from %s (%s) REFUSED: called AE title %r is not ours (%s)",
                        calling, event.assoc.requestor.address, called, self.cfg.ae_title)

    def _on_established(self, event) -> None:
        with self._lock:
            self._counts[id(event.assoc)] = {}
            self._refused[id(event.assoc)] = 0
        self._answer_missing_datasets(event.assoc)
        refused = {str(cx.abstract_syntax) for cx in event.assoc.rejected_contexts}
        log.info("association from %s accepted%s", self._peer(event),
                 f" ({len(refused)} proposed SOP classes other than CT Image Storage refused)" if refused else "")

    def _on_closed(self, event, how: str) -> None:
        with self._lock:
            counts = self._counts.pop(id(event.assoc), {})
            refused = self._refused.pop(id(event.assoc), 0)
        per_study = ", ".join(f"study {uid}: {n}" for uid, n in counts.items()) or "no instances"
        log.info("association from %s %s: stored %d instance(s) (%s)%s", self._peer(event), how,
                 sum(counts.values()), per_study, f", refused {refused}" if refused else "")

    def _answer_missing_datasets(self, assoc) -> None:
        """Answer at once a C-STORE whose announced data set never comes (0xA900).

        pynetdicom keeps such a request half-decoded and waits for the data until the
        association times out, so the sender hangs. This wraps the association's DIMSE intake:
        a C-STORE request still without data :data:`EMPTY_DATASET_WAIT_S` after its command set
        is answered with a failure and dropped.
        """
        dimse = assoc.dimse
        receive = dimse.receive_primitive
        guard = threading.Lock()

        def refuse(message) -> None:
            with guard:
                if dimse.message is not message or message.data_set.getvalue():
                    return  # completed, or data arrived meanwhile
                dimse.message = None
            cs = message.command_set
            rsp = C_STORE()
            rsp.MessageIDBeingRespondedTo = cs.MessageID
            rsp.AffectedSOPClassUID = cs.AffectedSOPClassUID
            rsp.AffectedSOPInstanceUID = cs.AffectedSOPInstanceUID
            rsp.Status = STATUS_DATASET_MISMATCH
            dimse.send_msg(rsp, message.context_id)
            with self._lock:
                self._refused[id(assoc)] = self._refused.get(id(assoc), 0) + 1
            log.warning("C-STORE from %s REFUSED (status 0x%04X): the request announced a data set and sent none",
                        assoc.requestor.ae_title.strip(), STATUS_DATASET_MISMATCH)

        def receive_primitive(primitive) -> None:
            with guard:
                receive(primitive)
                message = dimse.message
            cs = getattr(message, "command_set", None)
            if (cs is not None and cs.get("CommandField") == 0x0001 and cs.get("CommandDataSetType") != 0x0101
                    and not message.data_set.getvalue() and not getattr(message, "_data_set_file", None)):
                timer = threading.Timer(EMPTY_DATASET_WAIT_S, refuse, args=(message,))
                timer.daemon = True
                timer.start()

        dimse.receive_primitive = receive_primitive

    def _on_echo(self, event) -> int:
        log.info("C-ECHO from %s", self._peer(event))
        return STATUS_SUCCESS

    def _on_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        data = event.encoded_dataset(include_meta=True)
        ts = str(event.context.transfer_syntax)
        try:
            ds = event.dataset
            problem = check_instance(ds, ts, event.request.AffectedSOPInstanceUID)
        except Exception as exc:  # anything the decoder chokes on is a corrupt instance
            problem = STATUS_CANNOT_UNDERSTAND, "unparseable", f"cannot decode the dataset: {exc}"
        if problem:
            status, reason, detail = problem
            try:
                kept = "kept as " + self.spool.reject(data, calling, reason, detail).name
            except OSError as exc:
                kept = f"could not keep it: {exc}"
            with self._lock:
                self._refused[id(event.assoc)] = self._refused.get(id(event.assoc), 0) + 1
            log.warning("C-STORE from %s REFUSED (status 0x%04X): %s; %s", calling, status, detail, kept)
            return status
        study, sop = str(ds.StudyInstanceUID).strip("\0 "), str(ds.SOPInstanceUID).strip("\0 ")
        try:
            _, new = self.spool.store_instance(study, sop, data)
        except OSError as exc:
            log.error("C-STORE from %s: cannot write the spool (%s); answered 0xA700 so the sender retries", calling, exc)
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            counts = self._counts.setdefault(id(event.assoc), {})
            counts[study] = counts.get(study, 0) + 1
        log.debug("stored %s / %s from %s", study, sop, calling)
        self.on_stored(study, new)
        return STATUS_SUCCESS

    def start(self) -> None:
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, lambda e: self._on_closed(e, "released")),
            (evt.EVT_ABORTED, lambda e: self._on_closed(e, "aborted")),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.server = self.ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                           evt_handlers=handlers)  # type: ignore[arg-type]
        log.info("listening as AE %s on %s:%d; accepting CT Image Storage from %s",
                 self.cfg.ae_title, self.cfg.host, self.cfg.port, ", ".join(self.cfg.allowed_calling_aets))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
