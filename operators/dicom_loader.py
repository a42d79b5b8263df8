"""The SDK's DICOM loader, fed only with files that parse: a corrupt file is skipped and named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator

from aspects.dicom_input import Scan, read_dataset, scan_folder
from aspects.timings import timed


class SafeDICOMDataLoaderOperator(DICOMDataLoaderOperator):
    """Loads a study folder like the SDK operator, but never fails on one unreadable file.

    Named input: optional "input_folder"; named output: "dicom_study_list" (List[DICOMStudy]).
    ``scan``: the app's pre-flight scan of the same folder (its files are loaded without
    scanning again). Files without the DICOM preamble are read too; instances at one position
    are not silently dropped here (the pre-flight checks refuse or de-duplicate them by name).
    """

    def __init__(self, *args, scan: Optional[Scan] = None, **kwargs):
        self._scan = scan
        super().__init__(*args, **kwargs)

    def load_data_to_studies(self, input_path: Path):
        with timed("load"):
            scan = self._scan if self._scan is not None else scan_folder(Path(input_path))
            files: List[str] = [str(ds.filename) for ds in scan.datasets]
            logging.getLogger(__name__).info(
                "loading %d DICOM file(s) from %s (%d skipped)", len(files), input_path, len(scan.skipped)
            )
            return self._load_data(files)

    def _load_data(self, files: List[str]):
        """The SDK's study/series grouping of ``files`` (read with :func:`read_dataset`)."""
        studies: Dict[str, DICOMStudy] = {}
        series: Dict[str, DICOMSeries] = {}
        for file in files:
            ds, _, _ = read_dataset(file)
            if ds.SOPClassUID in DICOMDataLoaderOperator.SOP_CLASSES_TO_IGNORE:
                continue
            study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            if study_uid not in studies:
                studies[study_uid] = DICOMStudy(study_uid)
                self.populate_study_attributes(studies[study_uid], ds)
            if series_uid not in series:
                series[series_uid] = DICOMSeries(series_uid)
                self.populate_series_attributes(series[series_uid], ds)
                studies[study_uid].add_series(series[series_uid])
            series[series_uid].add_sop_instance(ds)
        return list(studies.values())
