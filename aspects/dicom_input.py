"""Read an input folder of DICOM files defensively: headers only, corrupt files skipped and named."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from aspects.errors import EXIT_NO_DICOM, EXIT_USAGE, InputError

log = logging.getLogger(__name__)

_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


@dataclass
class Scan:
    folder: Path
    datasets: List[Dataset] = field(default_factory=list)  # headers only; ds.filename is the file
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (file, reason)


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
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
    return files


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
            with open(path, "rb") as fp:
                ds = dcmread(fp, stop_before_pixels=True)
                pixel_offset = fp.tell()
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            scan.skipped.append((path, f"not readable as DICOM ({type(exc).__name__})"))
            continue
        if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds:
            scan.skipped.append((path, "not a DICOM image instance (no SOP class / series UID)"))
            continue
        if _truncated(path, ds, pixel_offset):
            scan.skipped.append((path, "truncated pixel data"))
            continue
        scan.datasets.append(ds)
    for path, why in scan.skipped:
        log.warning("skipped %s: %s", path, why)
    if not scan.datasets:
        raise InputError(
            EXIT_NO_DICOM, f"no readable DICOM image in {folder} ({len(files)} file(s), none usable as DICOM)"
        )
    return scan
