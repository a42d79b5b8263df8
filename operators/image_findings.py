"""Image findings operator: blood, old infarct and calcification in the aligned study."""

from __future__ import annotations

from monai.deploy.core import Operator, OperatorSpec

from aspects.assess import image_findings


class ImageFindingsOperator(Operator):
    """Named inputs: "preprocessed" (:class:`aspects.preprocess.Preprocessed`) and "regions"
    (:class:`aspects.segmentation.RegionSegmentation`: its ASPECTS levels bound the blood search
    at the brain's rim). Named output: "findings" (:class:`aspects.assess.ImageFindings`).

    It does not need the infarct segmentation, so it runs on the scheduler's second worker while
    the infarct segmenter's mirror registration still runs.
    """

    IN_PREPROCESSED = "preprocessed"
    IN_REGIONS = "regions"
    OUT_FINDINGS = "findings"

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_PREPROCESSED)
        spec.input(self.IN_REGIONS)
        spec.output(self.OUT_FINDINGS)

    def compute(self, op_input, op_output, context):
        pre, regions = op_input.receive(self.IN_PREPROCESSED), op_input.receive(self.IN_REGIONS)
        op_output.emit(image_findings(pre, regions), self.OUT_FINDINGS)
