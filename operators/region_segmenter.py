"""Region segmenter operator: the 20 ASPECTS regions on the aligned grid (model or atlas SyN)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.atlas import shared_atlas
from aspects.region_atlas import territories_aligned
from aspects.segmentation import segment_regions


class RegionSegmenterOperator(Operator):
    """Named input: "preprocessed". Named output: "regions" =
    ``{"labels_aligned": sitk uint8, "territories_aligned": sitk uint8 (arterial territories,
    affine), "method": "model"|"atlas", "seconds": float}``.

    ``models_dir``: the app's model folder (``aspects_regions/aspects_regions.ts`` used when
    present); ``atlas_dir``: the atlas folder (None: default); ``device``: as for the infarct
    segmenter (:func:`aspects.inference.resolve_device`).
    """

    def __init__(self, fragment: Fragment, *args, models_dir: Optional[Path] = None,
                 atlas_dir: Optional[Path] = None, device: Optional[str] = None, **kwargs):
        self._models_dir = Path(models_dir) if models_dir else None
        self._atlas_dir = atlas_dir
        self._device = device
        self._atlas = None
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("preprocessed")
        spec.output("regions")

    def compute(self, op_input, op_output, context):
        pre = op_input.receive("preprocessed")
        if self._atlas is None:
            self._atlas = shared_atlas(self._atlas_dir)
        t0 = time.perf_counter()
        labels, method = segment_regions(pre, self._atlas, self._models_dir, self._device)
        seconds = round(time.perf_counter() - t0, 3)
        self._logger.info("regions by %s in %.1f s", method, seconds)
        op_output.emit({"labels_aligned": labels, "territories_aligned": territories_aligned(pre, self._atlas),
                        "method": method, "seconds": seconds}, "regions")
