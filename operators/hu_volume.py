"""Wrap the SDK's series volume as a SimpleITK HU image on the series' own grid."""

from __future__ import annotations

import numpy as np
from monai.deploy.core import Operator, OperatorSpec

from aspects.timings import timed
from aspects.volume import hu_volume


class HUVolumeOperator(Operator):
    """Named inputs: "image" (SDK Image, slices in the order of the sorted series) and
    "source_datasets"; named output: "volume" (SimpleITK float32 HU image, LPS)."""

    def setup(self, spec: OperatorSpec):
        spec.input("image")
        spec.input("source_datasets")
        spec.output("volume")

    def compute(self, op_input, op_output, context):
        image = op_input.receive("image")
        datasets = op_input.receive("source_datasets")
        with timed("hu_volume"):
            volume = hu_volume(np.asarray(image.asnumpy()), datasets)
        op_output.emit(volume, "volume")
