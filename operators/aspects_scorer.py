"""ASPECTS scorer operator: the segmenters' results on the source slices, flags, evidence, score."""

from __future__ import annotations

from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.assess import ScoringSettings, assess_study


class AspectsScorerOperator(Operator):
    """Named inputs: "series" (:class:`aspects.series.SourceSeries`), "preprocessed",
    "infarct" (:class:`aspects.segmentation.InfarctSegmentation`), "regions"
    (:class:`aspects.segmentation.RegionSegmentation`) and "findings"
    (:class:`aspects.assess.ImageFindings`).
    Named output: "scored" (:class:`aspects.assess.ScoredStudy`: the aspects.json document without
    outputs, the source-grid masks and the source instances, for every writer).

    ``settings``: involvement thresholds and the region-evidence calibration (default: the
    documented defaults and ``config/region_evidence.json``).
    """

    IN_SERIES = "series"
    IN_PREPROCESSED = "preprocessed"
    IN_INFARCT = "infarct"
    IN_REGIONS = "regions"
    IN_FINDINGS = "findings"
    OUT_SCORED = "scored"

    def __init__(self, fragment: Fragment, *args, settings: Optional[ScoringSettings] = None, **kwargs):
        self._settings = settings if settings is not None else ScoringSettings()
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        for name in (self.IN_SERIES, self.IN_PREPROCESSED, self.IN_INFARCT, self.IN_REGIONS, self.IN_FINDINGS):
            spec.input(name)
        spec.output(self.OUT_SCORED)

    def compute(self, op_input, op_output, context):
        series, pre, infarct, regions, image = (
            op_input.receive(n) for n in (self.IN_SERIES, self.IN_PREPROCESSED, self.IN_INFARCT, self.IN_REGIONS,
                                          self.IN_FINDINGS))
        op_output.emit(assess_study(series, pre, infarct, regions, self._settings, image), self.OUT_SCORED)
