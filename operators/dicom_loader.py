"""The SDK's DICOM loader, fed only with files that parse: a corrupt file is skipped and named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator

from aspects.dicom_input import scan_folder
from aspects.timings import timed


class SafeDICOMDataLoaderOperator(DICOMDataLoaderOperator):
    """Loads a study folder like the SDK operator, but never fails on one unreadable file.

    Named input: optional "input_folder"; named output: "dicom_study_list" (List[DICOMStudy]).
    """

    def load_data_to_studies(self, input_path: Path):
        with timed("load"):
            scan = scan_folder(Path(input_path))  # raises InputError for empty / DICOM-free folders
            files: List[str] = [str(ds.filename) for ds in scan.datasets]
            logging.getLogger(__name__).info(
                "loading %d DICOM file(s) from %s (%d skipped)", len(files), input_path, len(scan.skipped)
            )
            return self._load_data(files)
