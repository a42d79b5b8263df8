"""Infarct segmenter operator: acute hypodensity on the aligned grid (model or asymmetry)."""

from __future__ import annotations

from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.segmentation import TorchModel, segment_infarct


class InfarctSegmenterOperator(Operator):
    """Named input: "preprocessed" (:class:`aspects.preprocess.Preprocessed`).
    Named output: "infarct" (:class:`aspects.segmentation.InfarctSegmentation`).

    ``model``: the installed infarct model (``aspects.segmentation.SegmentationModels``); None:
    the bilateral-asymmetry baseline.
    """

    IN_PREPROCESSED = "preprocessed"
    OUT_INFARCT = "infarct"

    def __init__(self, fragment: Fragment, *args, model: Optional[TorchModel] = None, **kwargs):
        self._model = model
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_PREPROCESSED)
        spec.output(self.OUT_INFARCT)

    def compute(self, op_input, op_output, context):
        op_output.emit(segment_infarct(op_input.receive(self.IN_PREPROCESSED), self._model), self.OUT_INFARCT)
