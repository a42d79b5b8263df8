"""Read an input folder of DICOM files defensively: headers only, corrupt files skipped and named.

What real archives send, handled here: files without the 128-byte preamble (read when they parse
as DICOM), byte-identical copies of one instance (kept once), images without pixel data or whose
pixel data stop short (skipped with that reason), and compressed transfer syntaxes (checked
against the installed pixel decoders before the pipeline starts).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from aspects.errors import EXIT_NO_DICOM, EXIT_UNDECODABLE, EXIT_USAGE, InputError

log = logging.getLogger(__name__)
# One line per skipped file goes here: the file log (app.log) keeps them, the console does not.
skipped_log = logging.getLogger("aspects.skipped")
skipped_log.setLevel(logging.DEBUG)

DEFLATED = "1.2.840.10008.1.2.1.99"  # read through zlib: file offsets say nothing about the data set
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
SUMMARY_NAMES = 3  # skipped files named on the console line; the rest are in the log

# Type 2 attributes of the Patient / General Study modules that derived objects must carry (empty
# when unknown); de-identified or old archives often drop them altogether.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass
class Scan:
    folder: Path
    datasets: List[Dataset] = field(default_factory=list)  # headers only; ds.filename is the file
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (file, reason)
    duplicates: List[Tuple[str, str]] = field(default_factory=list)  # (ignored copy, kept file)
    no_preamble: List[str] = field(default_factory=list)  # read without the 128-byte preamble

    def summary(self) -> Optional[str]:
        """One line about the skipped files (count and the first few names), or None."""
        if not self.skipped:
            return None
        names = ", ".join(os.path.basename(p) for p, _ in self.skipped[:SUMMARY_NAMES])
        more = f" and {len(self.skipped) - SUMMARY_NAMES} more" if len(self.skipped) > SUMMARY_NAMES else ""
        reasons = sorted({why for _, why in self.skipped})
        return (f"skipped {len(self.skipped)} file(s) that are not usable DICOM images ({names}{more}; "
                f"{'; '.join(reasons[:3])}{' ...' if len(reasons) > 3 else ''}); the full list is in app.log")


def _truncated(path: str, ds: Dataset, pixel_offset: int) -> bool:
    """An uncompressed image whose file ends before its pixel data does.

    ``pixel_offset`` is where header reading stopped, i.e. the Pixel Data element's tag; its
    header takes at least 8 more bytes.
    """
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if syntax not in _NATIVE_SYNTAXES or "Rows" not in ds:
        return False
    need = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("BitsAllocated", 16)) // 8
    need *= int(ds.get("NumberOfFrames", 1) or 1)
    return os.path.getsize(path) < pixel_offset + 8 + need


def list_files(folder: Path) -> List[str]:
    files: List[str] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
    return files


def _set_transfer_syntax(ds: Dataset) -> None:
    """A dataset read without file meta: record the encoding it was read with, so that its
    pixels can be decoded (uncompressed, as a preamble-less file always is)."""
    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    syntax = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.file_meta = meta if meta is not None else FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def read_dataset(path: str, stop_before_pixels: bool = False) -> Tuple[Dataset, int, bool]:
    """(dataset, offset where reading stopped, read without preamble?) of one file.

    A file without the preamble / 'DICM' prefix is read when it parses into a dataset with the
    UIDs of an instance; anything else raises InvalidDicomError.
    """
    with open(path, "rb") as fp:
        try:
            ds = dcmread(fp, stop_before_pixels=stop_before_pixels)
            return ds, fp.tell(), False
        except InvalidDicomError:
            pass
    with open(path, "rb") as fp:
        try:
            ds = dcmread(fp, stop_before_pixels=stop_before_pixels, force=True)
            offset = fp.tell()
            uids_ok = all(_is_uid(ds.get(k)) for k in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"))
        except Exception as exc:  # arbitrary bytes read by force: any parser error means "not DICOM"
            raise InvalidDicomError(f"not DICOM ({type(exc).__name__})") from None
    if not uids_ok:
        raise InvalidDicomError("no DICOM preamble and no instance UIDs")
    _set_transfer_syntax(ds)
    return ds, offset, True


def _is_uid(value) -> bool:
    text = str(value or "")
    return 0 < len(text) <= 64 and all(part.isdigit() for part in text.split("."))


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _drop_identical_copies(scan: Scan) -> None:
    """Byte-identical files of one SOP instance (a PACS export that ran twice) are kept once;
    different files sharing a UID stay for the series checks, which refuse them by UID."""
    by_uid: Dict[str, List[Dataset]] = {}
    for ds in scan.datasets:
        by_uid.setdefault(str(ds.SOPInstanceUID), []).append(ds)
    drop = set()
    for same in by_uid.values():
        if len(same) < 2:
            continue
        digests: Dict[str, Dataset] = {}
        for ds in same:
            d = _digest(str(ds.filename))
            if d in digests:
                drop.add(id(ds))
                scan.duplicates.append((str(ds.filename), str(digests[d].filename)))
            else:
                digests[d] = ds
    scan.datasets = [ds for ds in scan.datasets if id(ds) not in drop]


def scan_folder(folder: Path) -> Scan:
    """Read every file's header; raise InputError for a missing, empty or DICOM-free folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(EXIT_USAGE, f"input folder {folder} does not exist or is not a folder")
    files = list_files(folder)
    if not files:
        raise InputError(EXIT_NO_DICOM, f"input folder {folder} is empty")
    scan = Scan(folder)
    for path in files:
        if os.path.basename(path).upper() == "DICOMDIR":
            continue
        try:
            ds, pixel_offset, no_preamble = read_dataset(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            scan.skipped.append((path, f"not readable as DICOM ({type(exc).__name__})"))
            continue
        if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds or "SOPInstanceUID" not in ds:
            scan.skipped.append((path, "not a DICOM image instance (no SOP class / instance / series UID)"))
            continue
        deflated = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")) == DEFLATED
        if "Rows" in ds and not deflated and os.path.getsize(path) <= pixel_offset:  # offsets: of the file
            scan.skipped.append((path, "no pixel data"))
            continue
        if _truncated(path, ds, pixel_offset):
            scan.skipped.append((path, "truncated pixel data"))
            continue
        if no_preamble:
            scan.no_preamble.append(path)
        scan.datasets.append(ds)
    _drop_identical_copies(scan)
    for path, why in scan.skipped:
        skipped_log.debug("skipped %s: %s", path, why)
    if scan.skipped:
        log.warning("%s", scan.summary())
    if scan.no_preamble:
        log.info("read %d file(s) without the 128-byte DICOM preamble (e.g. %s)", len(scan.no_preamble),
                 os.path.basename(scan.no_preamble[0]))
    for copy, kept in scan.duplicates:
        log.info("ignored %s: byte-identical copy of %s", copy, kept)
    if not scan.datasets:
        raise InputError(
            EXIT_NO_DICOM, f"no readable DICOM image in {folder} ({len(files)} file(s), none usable as DICOM)"
        )
    return scan


def check_decodable(datasets: Sequence[Dataset]) -> None:
    """Refuse (exit 8) a series whose pixel encoding no installed pydicom decoder handles."""
    for ds in datasets:
        syntax = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ImplicitVRLittleEndian))
        try:
            available = get_decoder(syntax).is_available
        except (NotImplementedError, ValueError, AttributeError):
            available = False
        if not available:
            name = syntax.name if syntax.is_valid and syntax.name != syntax else "unknown"
            raise InputError(EXIT_UNDECODABLE, f"the pixel data of {os.path.basename(str(ds.filename))} are encoded as "
                                               f"{syntax} ({name}), which this installation cannot decode")


def complete_type2(ds: Dataset) -> Dataset:
    """Add the Type 2 patient/study attributes a derived object copies, empty where the source
    lacks them (in memory only: the input files are never written)."""
    for kw in TYPE2_PATIENT_STUDY:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds
