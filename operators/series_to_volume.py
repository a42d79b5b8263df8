"""Series to volume: the chosen series' files read once, as sorted instances and a HU volume."""

from __future__ import annotations

from typing import Optional

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec

from aspects.head_start import HeadStart, result_after
from aspects.series import load_series


class SeriesToVolumeOperator(Operator):
    """Named input: "selection" (:class:`aspects.selection.Selection`).
    Named output: "series" (:class:`aspects.series.SourceSeries`: the instances with pixel data,
    sorted along the slice normal, and their float32 HU image, LPS, on the series' own grid when it
    is regular, else resampled with the gantry tilt removed and the slice steps made equal).
    A slice no installed decoder reads ends the run (exit 8, the file named).
    ``head_start``: the volume already read from the same selection.
    """

    IN_SELECTION = "selection"
    OUT_SERIES = "series"

    def __init__(self, fragment: Fragment, *args, head_start: Optional[HeadStart] = None, **kwargs):
        self._head = head_start
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SELECTION)
        spec.output(self.OUT_SERIES).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        selection = op_input.receive(self.IN_SELECTION)
        op_output.emit(result_after(self._head, "selection", selection, load_series), self.OUT_SERIES)
