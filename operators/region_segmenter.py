"""Region segmenter operator: the 20 ASPECTS regions on the aligned grid (model or atlas warp)."""

from __future__ import annotations

from typing import Callable, Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.atlas import Atlas
from aspects.segmentation import TorchModel, segment_regions


class RegionSegmenterOperator(Operator):
    """Named input: "preprocessed" (:class:`aspects.preprocess.Preprocessed`).
    Named output: "regions" (:class:`aspects.segmentation.RegionSegmentation`: labels and arterial
    territories on the aligned grid, the method and the stage time).

    ``atlas``: returns the atlas (shared with preprocessing); ``model``: the installed region
    model, None: the atlas LNCC warp.
    """

    IN_PREPROCESSED = "preprocessed"
    OUT_REGIONS = "regions"

    def __init__(self, fragment: Fragment, *args, atlas: Callable[[], Atlas], model: Optional[TorchModel] = None,
                 **kwargs):
        self._atlas, self._model = atlas, model
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_PREPROCESSED)
        spec.output(self.OUT_REGIONS)

    def compute(self, op_input, op_output, context):
        pre = op_input.receive(self.IN_PREPROCESSED)
        op_output.emit(segment_regions(pre, self._atlas(), self._model), self.OUT_REGIONS)
