"""DICOM loader: the input folder scanned once, every file's header read, unusable files skipped
and named."""

from __future__ import annotations

import logging
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.dicom_input import scan_folder
from aspects.timings import timed


class DICOMLoaderOperator(Operator):
    """Reads the header of every file of the study folder (the only pass over the folder).

    Named output: "scan" (:class:`aspects.dicom_input.Scan`: the readable instances' headers, the
    skipped files and why). A missing, empty or DICOM-free folder ends the run (exit 2 or 3).
    """

    OUT_SCAN = "scan"

    def __init__(self, fragment: Fragment, *args, input_folder: Path, **kwargs):
        self.input_folder = Path(input_folder)
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output(self.OUT_SCAN)

    def compute(self, op_input, op_output, context):
        with timed("scan"):
            scan = scan_folder(self.input_folder)
        self._logger.info("read %d DICOM header(s) from %s (%d file(s) skipped)", len(scan.datasets),
                          self.input_folder, len(scan.skipped))
        op_output.emit(scan, self.OUT_SCAN)
