"""Select the head NCCT series of the study by the rules in config/series_selection.json."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from pydicom.dataset import Dataset

from aspects.dicom_geometry import sort_slices
from aspects.dicom_input import complete_type2
from aspects.selection import load_rules, select_series
from aspects.timings import timed


class NCCTSeriesSelectorOperator(Operator):
    """Picks one series (CT, axial, original/primary, non-contrast, not a localizer/reformat).

    Named input: "dicom_study_list" (List[DICOMStudy]).
    Named outputs: "study_selected_series_list" (List[StudySelectedSeries], for the SDK's
    series-to-volume operator) and "source_datasets" (the chosen series' pydicom datasets, sorted
    along the slice normal: the source grid every output goes back to; Type 2 patient/study
    attributes the source lacks are added empty, in memory, for the derived objects).
    """

    def __init__(self, fragment: Fragment, *args, rules_file: Optional[Path] = None, **kwargs):
        self._rules = load_rules(rules_file)
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("dicom_study_list")
        spec.output("study_selected_series_list")
        spec.output("source_datasets").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        studies = op_input.receive("dicom_study_list")
        by_key: Dict[Tuple[str, str], List[Dataset]] = {}
        series_obj = {}
        for study in studies:
            for series in study.get_all_series():
                key = (study.StudyInstanceUID, series.SeriesInstanceUID)
                by_key[key] = [s.get_native_sop_instance() for s in series.get_sop_instances()]
                series_obj[key] = (study, series)
        with timed("select"):
            selection = select_series(by_key, self._rules)
        study, series = series_obj[(selection.study_uid, selection.chosen.series_uid)]
        self._logger.info("selected %s", selection.chosen.label)
        chosen = StudySelectedSeries(study)
        chosen.add_selected_series(SelectedSeries("ncct", series))
        op_output.emit([chosen], "study_selected_series_list")
        op_output.emit([complete_type2(ds) for ds in sort_slices(selection.chosen.datasets)], "source_datasets")
