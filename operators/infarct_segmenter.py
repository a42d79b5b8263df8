"""Infarct segmenter operator: acute hypodensity on the aligned grid (model or asymmetry)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.segmentation import segment_infarct


class InfarctSegmenterOperator(Operator):
    """Named input: "preprocessed". Named output: "infarct"
    (:class:`aspects.segmentation.InfarctSegmentation`; ``info["seconds"]`` is the stage time).

    ``models_dir``: the app's model folder (``infarct_seg/infarct_seg.ts`` used when present);
    ``device``: "cpu" | "cuda:N" | "cuda" | "auto" (None: ``$ASPECTS_DEVICE``, else automatic;
    see :func:`aspects.inference.resolve_device`).
    """

    def __init__(self, fragment: Fragment, *args, models_dir: Optional[Path] = None,
                 device: Optional[str] = None, **kwargs):
        self._models_dir = Path(models_dir) if models_dir else None
        self._device = device
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("preprocessed")
        spec.output("infarct")

    def compute(self, op_input, op_output, context):
        pre = op_input.receive("preprocessed")
        t0 = time.perf_counter()
        result = segment_infarct(pre, self._models_dir, self._device)
        result.info["seconds"] = round(time.perf_counter() - t0, 3)
        self._logger.info("infarct by %s on %s in %.1f s: %s", result.method, result.device,
                          result.info["seconds"], result.info)
        op_output.emit(result, "infarct")
