"""Load a study folder into the SDK's DICOM study / series objects; a corrupt file is skipped and named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy

from aspects.dicom_input import Scan, read_dataset, scan_folder
from aspects.timings import timed

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: not an image


class SafeDICOMDataLoaderOperator(Operator):
    """Loads a study folder as the SDK's ``DICOMDataLoaderOperator`` does (same ports, same
    ``DICOMStudy`` / ``DICOMSeries`` output), but never fails on one unreadable file.

    Named input: optional "input_folder"; named output: "dicom_study_list" (List[DICOMStudy]).
    ``scan``: the app's pre-flight scan of the same folder (its files are loaded without
    scanning again). Files without the DICOM preamble are read too; instances at one position
    are not silently dropped here (the pre-flight checks refuse or de-duplicate them by name).
    Not a subclass of the SDK operator: importing ``monai.deploy.operators`` imports every SDK
    operator, MONAI core included (docs/performance.md).
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Optional[Path] = None, scan: Optional[Scan] = None,
                 **kwargs):
        self.input_path = Path(input_folder) if input_folder is not None else None
        self._scan = scan
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("input_folder").condition(ConditionType.NONE)  # optional: else the constructor's folder
        spec.output("dicom_study_list")

    def compute(self, op_input, op_output, context):
        folder = op_input.receive("input_folder") or self.input_path
        if folder is None:
            raise ValueError("no input folder: neither the input port nor input_folder= gave one")
        op_output.emit(self.load_data_to_studies(Path(folder)), "dicom_study_list")

    def load_data_to_studies(self, input_path: Path) -> List[DICOMStudy]:
        with timed("load"):
            scan = self._scan if self._scan is not None else scan_folder(Path(input_path))
            files: List[str] = [str(ds.filename) for ds in scan.datasets]
            logging.getLogger(__name__).info(
                "loading %d DICOM file(s) from %s (%d skipped)", len(files), input_path, len(scan.skipped)
            )
            return self._load_data(files)

    @staticmethod
    def _load_data(files: List[str]) -> List[DICOMStudy]:
        """Studies and series of ``files`` (read with :func:`read_dataset`), in file order."""
        studies: Dict[str, DICOMStudy] = {}
        series: Dict[str, DICOMSeries] = {}
        for file in files:
            ds, _, _ = read_dataset(file)
            if ds.SOPClassUID == DICOMDIR_SOP_CLASS:
                continue
            study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            if study_uid not in studies:
                studies[study_uid] = DICOMStudy(study_uid)
            if series_uid not in series:
                series[series_uid] = DICOMSeries(series_uid)
                studies[study_uid].add_series(series[series_uid])
            series[series_uid].add_sop_instance(ds)
        return list(studies.values())
