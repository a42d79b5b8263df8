"""DICOM loader: the input folder scanned once, every file's header read, unusable files skipped
and named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.dicom_input import scan_folder
from aspects.head_start import HeadStart
from aspects.timings import timed


class DICOMLoaderOperator(Operator):
    """Reads the header of every file of the study folder (the only pass over the folder).

    Named output: "scan" (:class:`aspects.dicom_input.Scan`: the readable instances' headers, the
    skipped files and why). A missing, empty or DICOM-free folder ends the run (exit 2 or 3).
    ``head_start``: the scan of the same folder already under way (:mod:`aspects.head_start`).
    """

    OUT_SCAN = "scan"

    def __init__(self, fragment: Fragment, *args, input_folder: Path, head_start: Optional[HeadStart] = None,
                 **kwargs):
        self.input_folder = Path(input_folder)
        self._head = head_start if head_start is not None and head_start.input_folder == self.input_folder else None
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output(self.OUT_SCAN)

    def compute(self, op_input, op_output, context):
        if self._head is not None:
            scan = self._head.take("scan")  # timed where it ran
        else:
            with timed("scan"):
                scan = scan_folder(self.input_folder)
        self._logger.info("read %d DICOM header(s) from %s (%d file(s) skipped)", len(scan.datasets),
                          self.input_folder, len(scan.skipped))
        op_output.emit(scan, self.OUT_SCAN)
