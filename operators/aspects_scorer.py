"""Score ASPECTS on the source grid from the aligned-space region map and infarct mask."""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
import SimpleITK as sitk
from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects import APP_NAME, __version__
from aspects.flags import acute_only, image_flags, outside_mca_flag
from aspects.preprocess import to_source
from aspects.timings import record, snapshot
from aspects.scoring import DEFAULT_INVOLVEMENT_FRACTION, DEFAULT_INVOLVEMENT_ML, score


class AspectsScorerOperator(Operator):
    """Named inputs: "preprocessed", "regions", "infarct" (from the segmenters) and
    "source_datasets". Named outputs: "result" (the aspects.json content, outputs still to be
    filled by the writers), "infarct" (bool) and "regions" (uint8) = (z, y, x) masks on the
    source grid, "source" (the sorted source datasets) and "masks" (both masks as SimpleITK
    images in the source geometry, for the NIfTI writer).
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        fraction_threshold: float = DEFAULT_INVOLVEMENT_FRACTION,
        ml_threshold: Optional[float] = DEFAULT_INVOLVEMENT_ML,
        **kwargs,
    ):
        self._fraction = fraction_threshold
        self._ml = ml_threshold
        self._logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("preprocessed")
        spec.input("regions")
        spec.input("infarct")
        spec.input("source_datasets")
        for name in ("result", "infarct", "regions", "source", "masks"):
            spec.output(name)

    def compute(self, op_input, op_output, context):
        pre = op_input.receive("preprocessed")
        regions = op_input.receive("regions")
        infarct = op_input.receive("infarct")
        datasets = op_input.receive("source_datasets")
        t0 = time.perf_counter()
        aligned = sitk.GetArrayFromImage(pre.aligned)
        brain = sitk.GetArrayFromImage(pre.brain_mask)
        spacing = pre.aligned.GetSpacing()
        flags = image_flags(aligned, brain, spacing)
        found = sitk.GetArrayFromImage(infarct.mask) > 0
        acute = acute_only(found, aligned, brain, spacing)
        if acute.sum() < found.sum():
            self._logger.info("%.1f ml of hypodensity explained by old infarct / haemorrhage: not scored",
                              (found.sum() - acute.sum()) * np.prod(spacing) / 1000.0)
        if regions.get("territories_aligned") is not None:  # ACA / PCA / posterior circulation infarct
            outside = outside_mca_flag(acute, sitk.GetArrayFromImage(regions["labels_aligned"]),
                                       sitk.GetArrayFromImage(regions["territories_aligned"]), spacing)
            if outside is not None:
                flags.append(outside)
        acute_img = sitk.GetImageFromArray(acute.astype(np.uint8))
        acute_img.CopyInformation(infarct.mask)
        regions_img = sitk.Cast(to_source(pre, regions["labels_aligned"], label=True), sitk.sitkUInt8)
        infarct_img = sitk.Cast(to_source(pre, acute_img, label=True) > 0, sitk.sitkUInt8)
        regions_src = sitk.GetArrayFromImage(regions_img)
        infarct_src = sitk.GetArrayFromImage(infarct_img) > 0
        result = score(regions_src, infarct_src, pre.source.GetSpacing(), self._fraction, self._ml)
        flag_names = [f.name for f in flags]
        qc = getattr(pre, "qc", {}) or {}
        if qc.get("low_confidence"):
            flag_names.append("low_confidence")
        seconds = time.perf_counter() - t0
        ds0 = datasets[0]
        self._logger.info(
            "ASPECTS right %d, left %d; affected side %s; infarct %.1f ml; flags %s",
            result.aspects["right"], result.aspects["left"], result.affected_side,
            result.infarct_volume_ml, flag_names or "none",
        )
        record("preprocess", (getattr(pre, "timings", {}) or {}).get("total_s", 0.0))
        record("infarct", float(infarct.info.get("seconds", 0.0)))
        record("regions", regions.get("seconds", 0.0))
        record("scoring", seconds)
        timings = snapshot()
        timings.update({f"preprocess_{k[:-2] if k.endswith('_s') else k}": v
                        for k, v in (getattr(pre, "timings", {}) or {}).items() if k != "total_s"})
        aspects_json = {
            "schema_version": 1,
            "study_instance_uid": str(ds0.StudyInstanceUID),
            "series_instance_uid": str(ds0.SeriesInstanceUID),
            "affected_side": result.affected_side,
            "aspects": dict(result.aspects),
            "score": result.score,
            "infarct_volume_ml": round(result.infarct_volume_ml, 3),
            "regions": result.regions_json(),
            "flags": flag_names,
            "flag_details": {f.name: {"volume_ml": round(f.volume_ml, 3)} for f in flags},
            "qc": {k: v for k, v in qc.items() if isinstance(v, (int, float, str, bool, list)) or v is None},
            "thresholds": {"involvement_fraction": self._fraction, "involvement_ml": self._ml},
            "methods": {"regions": regions["method"], "infarct": infarct.method},
            "device": infarct.device,
            "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
            "not_for_diagnostic_use": True,
            "app": {"name": APP_NAME, "version": __version__},
        }
        op_output.emit(aspects_json, "result")
        op_output.emit(infarct_src, "infarct")
        op_output.emit(regions_src, "regions")
        op_output.emit(datasets, "source")
        op_output.emit({"infarct": infarct_img, "regions": regions_img}, "masks")
