"""Preprocessing operator: series HU volume -> skull-stripped, template-aligned brain."""

from __future__ import annotations

from typing import Callable

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.atlas import Atlas
from aspects.pipeline import preprocess_series


class PreprocessOperator(Operator):
    """Named input: "series" (:class:`aspects.series.SourceSeries`).
    Named output: "preprocessed" (:class:`aspects.preprocess.Preprocessed`).

    ``atlas``: returns the atlas (:class:`aspects.pipeline.LazyAtlas`: read once, shared with the
    region segmenter).
    """

    IN_SERIES = "series"
    OUT_PREPROCESSED = "preprocessed"

    def __init__(self, fragment: Fragment, *args, atlas: Callable[[], Atlas], **kwargs):
        self._atlas = atlas
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SERIES)
        spec.output(self.OUT_PREPROCESSED)

    def compute(self, op_input, op_output, context):
        op_output.emit(preprocess_series(op_input.receive(self.IN_SERIES), self._atlas()), self.OUT_PREPROCESSED)
