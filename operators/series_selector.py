"""Select the head NCCT series of the study by the rules in config/series_selection.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.head_start import HeadStart, result_after
from aspects.selection import load_rules
from aspects.series import choose_series


class NCCTSeriesSelectorOperator(Operator):
    """Picks one series (CT, axial, original/primary, non-contrast, not a localizer/reformat) and
    checks that its pixel data can be decoded.

    Named input: "scan" (:class:`aspects.dicom_input.Scan`).
    Named output: "selection" (:class:`aspects.selection.Selection`: the chosen series' headers
    and why it was chosen). No usable series ends the run (exit 4, 5, 6 or 8).
    ``head_start``: the selection already made from the same scan with the same rules.
    """

    IN_SCAN = "scan"
    OUT_SELECTION = "selection"

    def __init__(self, fragment: Fragment, *args, rules_file: Optional[Path] = None,
                 head_start: Optional[HeadStart] = None, **kwargs):
        self._rules = load_rules(rules_file)
        self._head = head_start if head_start is not None and head_start.rules == self._rules else None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCAN)
        spec.output(self.OUT_SELECTION)

    def compute(self, op_input, op_output, context):
        scan = op_input.receive(self.IN_SCAN)
        op_output.emit(result_after(self._head, "scan", scan, lambda s: choose_series(s, self._rules)),
                       self.OUT_SELECTION)
