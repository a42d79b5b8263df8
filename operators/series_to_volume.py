"""Series to volume: the chosen series' files read once, as sorted instances and a HU volume."""

from __future__ import annotations

from monai.deploy.core import ConditionType, Operator, OperatorSpec

from aspects.series import load_series


class SeriesToVolumeOperator(Operator):
    """Named input: "selection" (:class:`aspects.selection.Selection`).
    Named output: "series" (:class:`aspects.series.SourceSeries`: the instances with pixel data,
    sorted along the slice normal, and their float32 HU image, LPS, on the series' own grid when it
    is regular, else resampled with the gantry tilt removed and the slice steps made equal).
    A slice no installed decoder reads ends the run (exit 8, the file named).
    """

    IN_SELECTION = "selection"
    OUT_SERIES = "series"

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SELECTION)
        spec.output(self.OUT_SERIES).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        op_output.emit(load_series(op_input.receive(self.IN_SELECTION)), self.OUT_SERIES)
