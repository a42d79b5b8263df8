"""The SDK's series volume as a HU image on a regular orthogonal grid, with the slices' geometry."""

from __future__ import annotations

import logging

import numpy as np
from monai.deploy.core import Operator, OperatorSpec

from aspects.timings import timed
from aspects.volume import series_volume


class HUVolumeOperator(Operator):
    """Named inputs: "image" (SDK Image, slices in the order of the sorted series) and
    "source_datasets"; named output: "volume" (:class:`aspects.volume.SeriesVolume`: SimpleITK
    float32 HU image, LPS, on the series' own grid when it is regular, else resampled with the
    gantry tilt removed and the slice steps made equal; plus the original slices' geometry)."""

    def setup(self, spec: OperatorSpec):
        spec.input("image")
        spec.input("source_datasets")
        spec.output("volume")

    def compute(self, op_input, op_output, context):
        image = op_input.receive("image")
        datasets = op_input.receive("source_datasets")
        with timed("hu_volume"):
            volume = series_volume(np.asarray(image.asnumpy()), datasets)
        if volume.resampled:
            g = volume.geometry
            logging.getLogger(__name__).info(
                "series resampled onto a regular grid: gantry tilt %.1f deg removed, slice steps %.2f-%.2f mm -> "
                "%.2f mm (%d planes); results map back onto the %d original slices",
                g.tilt_deg, g.steps.min(), g.steps.max(), volume.image.GetSpacing()[2], volume.image.GetSize()[2],
                g.n_slices)
        op_output.emit(volume, "volume")
