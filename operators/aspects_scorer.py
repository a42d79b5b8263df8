"""Score ASPECTS on the source grid from the aligned-space region map and infarct mask."""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
import SimpleITK as sitk
from monai.deploy.core import Fragment, Operator, OperatorSpec

from aspects import APP_NAME, __version__
from aspects.dicom_geometry import SliceGeometry
from aspects.flags import acute_only, image_flags, outside_mca_flag
from aspects.labels import label_value
from aspects.preprocess import to_slices
from aspects.region_evidence import load_calibration, study_evidence
from aspects.result_json import INCOMPLETE_COVERAGE, SCHEMA_VERSION
from aspects.scoring import DEFAULT_INVOLVEMENT_FRACTION, DEFAULT_INVOLVEMENT_ML, assessable_regions, score
from aspects.timings import record, snapshot
from aspects.volume import on_grid, series_grid


class AspectsScorerOperator(Operator):
    """Named inputs: "preprocessed", "regions", "infarct" (from the segmenters) and
    "source_datasets". Named outputs: "result" (the aspects.json content, outputs still to be
    filled by the writers), "infarct" (bool) and "regions" (uint8) = (z, y, x) masks
    index-aligned with the sorted source instances (each slice sampled on its own plane, so a
    tilted or unevenly spaced series is exact), "source" (the sorted source datasets) and "masks"
    (both masks as SimpleITK images index-aligned with the instances, for the NIfTI writer).

    Regions the series does not cover are not assessable (aspects.json schema 2): their side has
    no ASPECTS and the flag ``incomplete_coverage`` lists them.
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
        self._calibration = load_calibration()  # None: the voxel mask alone decides involvement
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
        geometry = SliceGeometry.from_datasets(datasets)
        regions_src = to_slices(pre, regions["labels_aligned"], geometry, label=True).astype(np.uint8)
        infarct_src = to_slices(pre, acute_img, geometry, label=True) > 0
        evidence, calls = study_evidence(aligned, brain > 0, spacing, infarct.asymmetry.difference,
                                         infarct.asymmetry.comparable, sitk.GetArrayViewFromImage(regions["labels_aligned"]),
                                         self._calibration)
        coverage = getattr(pre, "coverage", {}) or {}
        result = score(regions_src, infarct_src, (), self._fraction, self._ml,
                       assessable=assessable_regions(coverage), slice_ml=geometry.slice_ml(),
                       evidence=evidence, evidence_calls=calls)
        by_evidence = [f"{s} {c}" for s in calls for c in calls[s] if calls[s][c]]
        if by_evidence:
            self._logger.info("region evidence calls early ischaemic change in %s", ", ".join(by_evidence))
        flag_names = [f.name for f in flags]
        flag_details = {f.name: {"volume_ml": round(f.volume_ml, 3)} for f in flags}
        missing = result.not_assessable
        if missing:
            flag_names.append(INCOMPLETE_COVERAGE)
            covered = {m: round(coverage.get(label_value(*m.split(" ")), 1.0), 3) for m in missing}
            flag_details[INCOMPLETE_COVERAGE] = {"regions": missing, "covered_fraction": covered}
            self._logger.warning("the series does not cover %s: not assessable, no ASPECTS for that side",
                                 ", ".join(f"{m} ({100 * c:.0f}% covered)" for m, c in covered.items()))
        qc = getattr(pre, "qc", {}) or {}
        if qc.get("low_confidence"):
            flag_names.append("low_confidence")
        seconds = time.perf_counter() - t0
        ds0 = datasets[0]
        self._logger.info(
            "ASPECTS right %s, left %s; affected side %s; infarct %.1f ml; flags %s",
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
            "schema_version": SCHEMA_VERSION,
            "study_instance_uid": str(ds0.StudyInstanceUID),
            "series_instance_uid": str(ds0.SeriesInstanceUID),
            "affected_side": result.affected_side,
            "aspects": dict(result.aspects),
            "score": result.score,
            "infarct_volume_ml": round(result.infarct_volume_ml, 3),
            "regions": result.regions_json(),
            "flags": flag_names,
            "flag_details": flag_details,
            "qc": {k: v for k, v in qc.items() if isinstance(v, (int, float, str, bool, list)) or v is None},
            "thresholds": {"involvement_fraction": self._fraction, "involvement_ml": self._ml,
                           "evidence": None if self._calibration is None else {
                               "z_call": self._calibration.z_call, "min_delta_hu": self._calibration.min_delta_hu,
                               "false_positive_rate": self._calibration.false_positive_rate}},
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
        grid = series_grid(datasets)
        masks = {"infarct": on_grid(infarct_src.astype(np.uint8), grid), "regions": on_grid(regions_src, grid)}
        op_output.emit(masks, "masks")
