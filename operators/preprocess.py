"""Preprocessing operator: series HU volume -> skull-stripped, template-aligned brain."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects.atlas import shared_atlas
from aspects.preprocess import preprocess


class PreprocessOperator(Operator):
    """Named input: "volume" (:class:`aspects.volume.SeriesVolume` of the selected series, or a
    SimpleITK HU image on the series grid).
    Named output: "preprocessed" (:class:`aspects.preprocess.Preprocessed`).

    ``atlas_dir``: the atlas folder (None: ``$ASPECTS_ATLAS_DIR`` or ``<repo>/atlas``).
    """

    def __init__(self, fragment: Fragment, *args, atlas_dir: Optional[Path] = None, **kwargs):
        self._atlas_dir = atlas_dir
        self._atlas = None
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("volume")
        spec.output("preprocessed")

    def compute(self, op_input, op_output, context):
        volume = op_input.receive("volume")
        if self._atlas is None:
            self._atlas = shared_atlas(self._atlas_dir)
        self._logger.info("preprocessing: skull stripping and registration to the atlas template")
        geometry = getattr(volume, "geometry", None)  # the original slices bound the scanned field
        pre = preprocess(getattr(volume, "image", volume), self._atlas, geometry=geometry)
        self._logger.info("preprocessing done in %.1f s %s; QC %s", pre.timings.get("total_s", 0.0), pre.timings, pre.qc)
        if pre.qc.get("low_confidence"):
            self._logger.warning("low confidence: %s", "; ".join(pre.qc.get("reasons", [])))
        op_output.emit(pre, "preprocessed")
