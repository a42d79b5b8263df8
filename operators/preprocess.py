"""Preprocessing operator: series HU volume -> skull-stripped, template-aligned brain."""

from __future__ import annotations

from typing import Callable, Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.atlas import Atlas
from aspects.head_start import HeadStart, result_after
from aspects.preprocess import preprocess_series


class PreprocessOperator(Operator):
    """Named input: "series" (:class:`aspects.series.SourceSeries`).
    Named output: "preprocessed" (:class:`aspects.preprocess.Preprocessed`).

    ``atlas``: returns the atlas (:class:`aspects.atlas.LazyAtlas`: read once, shared with the
    region segmenter). ``head_start``: the same series already being preprocessed with the same atlas.
    """

    IN_SERIES = "series"
    OUT_PREPROCESSED = "preprocessed"

    def __init__(self, fragment: Fragment, *args, atlas: Callable[[], Atlas], head_start: Optional[HeadStart] = None,
                 **kwargs):
        self._atlas = atlas
        self._head = head_start if head_start is not None and head_start.atlas is atlas else None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SERIES)
        spec.output(self.OUT_PREPROCESSED)

    def compute(self, op_input, op_output, context):
        series = op_input.receive(self.IN_SERIES)
        op_output.emit(result_after(self._head, "series", series, lambda s: preprocess_series(s, self._atlas())),
                       self.OUT_PREPROCESSED)
