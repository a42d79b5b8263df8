"""Assess a study: the segmenters' aligned results brought onto the source slices, the image
flags, the region-level evidence and ASPECTS, as one typed result the writers share.

Regions the series does not cover are not assessable (aspects.json schema 2): their side has no
ASPECTS and the flag ``incomplete_coverage`` lists them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from aspects.atlas import levels_span
from aspects.dicom_geometry import SliceGeometry
from aspects.dicom_seg import finding_segment_numbers
from aspects.flags import (OLD_MIRROR_HU, Findings, acute_only, blood_ground, find, flagged_masks, growable, image_flags, mask_flag,
                           outside_mca_mask, with_cavity)
from aspects.labels import FINDINGS, OUTSIDE_MCA, label_value
from aspects.methods import InfarctMethod, RegionMethod
from aspects.preprocess import Preprocessed, patient_ml_ratio, to_slices
from aspects.region_evidence import Calibration, load_calibration, study_evidence
from aspects.result_json import INCOMPLETE_COVERAGE, result_document
from aspects.scoring import (DEFAULT_INVOLVEMENT_FRACTION, DEFAULT_INVOLVEMENT_ML, EVIDENCE_MASK_FLOOR, MARGINAL_BAND,
                             assessable_regions, score)
from aspects.segmentation import (EDGE_CORE_PERCENTILE, EDGE_FRACTION, EDGE_MIN_CORE_HU, GROW_MIN_SHARE,
                                  InfarctSegmentation, RegionSegmentation, grow_into_support, lesion_edge)
from aspects.series import SourceSeries
from aspects.source_blood import source_blood
from aspects.source_cavity import source_cavity
from aspects.timings import record, snapshot
from aspects.volume import on_grid, series_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringSettings:
    """The involvement rules: fraction and optional ml threshold of the voxel mask, and the
    region-evidence calibration with the mask-local check (None: the voxel mask alone decides)."""

    fraction_threshold: float = DEFAULT_INVOLVEMENT_FRACTION
    ml_threshold: Optional[float] = DEFAULT_INVOLVEMENT_ML
    calibration: Optional[Calibration] = field(default_factory=load_calibration)
    # grow the kept acute lesions into the asymmetry baseline's components they cover at least
    # grow_min_share of (segmentation.grow_into_support), after what blood or an old infarct explains is removed
    grow_into_asymmetry: bool = True
    grow_min_share: float = GROW_MIN_SHARE
    # then cut each lesion at this fraction of its own contrast where that is >= edge_min_core_hu
    # (segmentation.lesion_edge; None: not cut)
    edge_fraction: Optional[float] = EDGE_FRACTION
    edge_min_core_hu: float = EDGE_MIN_CORE_HU
    # a mask call with a fraction in this band (times fraction_threshold) is marginal (None: none)
    marginal_band: Optional[Tuple[float, float]] = MARGINAL_BAND
    # an evidence call counts where the acute mask covers at least this much of the region, in
    # multiples of fraction_threshold (scoring.EVIDENCE_MASK_FLOOR; None: the evidence calls alone)
    evidence_mask_floor: Optional[float] = EVIDENCE_MASK_FLOOR

    def thresholds(self) -> Dict[str, Any]:
        """aspects.json ``thresholds``."""
        cal = self.calibration
        band = None if self.marginal_band is None else [round(b * self.fraction_threshold, 4) for b in self.marginal_band]
        return {"involvement_fraction": self.fraction_threshold, "involvement_ml": self.ml_threshold,
                "marginal_fraction": band,
                "lesion_edge": None if self.edge_fraction is None else {
                    "fraction": self.edge_fraction, "min_core_hu": self.edge_min_core_hu,
                    "core_percentile": EDGE_CORE_PERCENTILE},
                "evidence": None if cal is None else {
                    "z_call": cal.z_call, "min_delta_hu": cal.min_delta_hu, "false_positive_rate": cal.false_positive_rate,
                    "min_mask_fraction": None if self.evidence_mask_floor is None
                    else round(self.evidence_mask_floor * self.fraction_threshold, 4),
                    "partial": None if cal.partial is None else {"z_call": cal.partial.z_call,
                                                                 "min_delta_hu": cal.partial.min_delta_hu,
                                                                 "tail_fraction": cal.partial.tail_fraction,
                                                                 "calls": cal.partial.calls},
                    "mask_check": None if cal.mask_check is None else {
                        "min_masked_hu": cal.mask_check.min_masked_hu, "min_voxels": cal.mask_check.min_voxels,
                        "false_positive_rate": cal.mask_check.false_positive_rate,
                        "chunk_fraction": cal.mask_check.chunk_fraction, "applies": cal.mask_check.applies,
                        "spill_share": cal.mask_check.spill_share, "spill_fraction": cal.mask_check.spill_fraction},
                    "volume_loss": None if cal.volume_loss is None else {
                        "threshold_hu": cal.volume_loss.threshold_hu, "max_excess": cal.volume_loss.max_excess,
                        "applies": cal.volume_loss.applies},
                    "mask_support": None if cal.mask_support is None else {
                        "below_fraction": cal.mask_support.below_fraction,
                        "min_delta_hu": cal.mask_support.min_delta_hu, "applies": cal.mask_support.applies}}}


@dataclass(frozen=True)
class ScoredStudy:
    """What the writers need.

    ``document``: the aspects.json content without ``outputs`` (:func:`aspects.result_json.result_document`);
    ``infarct`` (bool) and ``regions`` (uint8, ``aspects.labels``): ``(z, y, x)`` masks index-aligned
    with ``source``, the sorted source datasets (each slice sampled on its own plane, so a tilted
    or unevenly spaced series is exact). ``findings``: the located flagged findings (suspected
    haemorrhage and suspected old infarct, ``aspects.labels.FINDINGS``, each a SEG segment; the
    acute infarct outside the MCA territory, ``infarct_outside_mca``, a part of ``infarct``) as
    bool masks of the same shape, by flag name, only those not empty on the slices.
    """

    document: Dict[str, Any]
    infarct: np.ndarray
    regions: np.ndarray
    source: Tuple[Dataset, ...]
    findings: Dict[str, np.ndarray] = field(default_factory=dict)

    def findings_labels(self) -> np.ndarray:
        """The located findings as one uint8 label map: value i + 1 for ``FINDINGS[i]`` (0: none);
        where two overlap, the first in FINDINGS order (the haemorrhage)."""
        out = np.zeros(self.regions.shape, np.uint8)
        for value, name in reversed(list(enumerate(FINDINGS, start=1))):
            if name in self.findings:
                out[self.findings[name]] = value
        return out

    def mask_images(self) -> Dict[str, sitk.Image]:
        """The masks as images index-aligned with the instances (the NIfTI copies): infarct,
        regions and findings (:meth:`findings_labels`)."""
        grid = series_grid(self.source)
        return {"infarct": on_grid(self.infarct.astype(np.uint8), grid), "regions": on_grid(self.regions, grid),
                "findings": on_grid(self.findings_labels(), grid)}


@dataclass(frozen=True)
class ImageFindings:
    """What the aligned image shows besides the acute infarct (:func:`aspects.flags.find`: blood,
    on the aligned grid and on the source slices, old infarct, calcification), and the seconds it
    took. It needs the region map's ASPECTS levels but not the infarct segmentation, so the app
    computes it beside the infarct segmenter's mirror registration."""

    findings: Findings
    seconds: float


def image_findings(pre: Preprocessed, regions: RegionSegmentation) -> ImageFindings:
    """Blood, old infarct and calcification of one aligned study (see :class:`ImageFindings`)."""
    t0 = time.perf_counter()
    aligned = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask)
    spacing = pre.aligned.GetSpacing()
    dense = sitk.GetArrayFromImage(pre.dense) > 0 if pre.dense is not None else None
    ground = blood_ground(aligned, brain, spacing, dense)
    # blood as the slices show it too (the aligned grid dilutes a small haematoma)
    sliced_blood = source_blood(pre, ground, None if regions.levels is None else levels_span(regions.levels))
    if sliced_blood.any():
        log.info("blood-like blob seen on the source slices: %.1f ml", sliced_blood.sum() * np.prod(spacing) / 1000.0)
    extra = sitk.GetArrayFromImage(pre.extra_axial) > 0 if pre.extra_axial is not None else None
    findings = find(aligned, brain, spacing, dense, sliced_blood, ground, extra)
    if findings.extra_axial_ml > 0:
        log.info("blood between the brain and the skull (subdural / epidural haematoma?): %.1f ml",
                 findings.extra_axial_ml)
    if findings.mirror_floor_hu < OLD_MIRROR_HU:
        log.info("the brain's white matter reads low: an old infarct's mirror counts as tissue from %.1f HU (not %.0f)",
                 findings.mirror_floor_hu, OLD_MIRROR_HU)
    seconds = time.perf_counter() - t0
    log.info("image findings (blood, old infarct, calcification) in %.2f s", seconds)
    return ImageFindings(findings, seconds)


def methods_of(regions: RegionSegmentation, infarct: InfarctSegmentation) -> Dict[str, Any]:
    """aspects.json ``methods``: which path segmented each and, where a model did, how it ran (its
    bundle version; for the infarct model also its input channel 1 and its mirror pass), so that a
    result can be traced to the model and the settings that made it."""
    out: Dict[str, Any] = {"regions": str(regions.method), "infarct": str(infarct.method)}
    if infarct.method == InfarctMethod.MODEL:
        out["infarct_model"] = {"version": infarct.info.get("model_version"),
                                "second_channel": infarct.info.get("second_channel"),
                                "mirror_tta": infarct.info.get("mirror_tta")}
    if regions.method == RegionMethod.MODEL:
        out["region_model"] = {"version": regions.model_version}
    return out


def assess_study(series: SourceSeries, pre: Preprocessed, infarct: InfarctSegmentation, regions: RegionSegmentation,
                 settings: Optional[ScoringSettings] = None, image: Optional[ImageFindings] = None) -> ScoredStudy:
    """Flags, source-grid masks, region evidence and ASPECTS of one study; ``image``: its
    :func:`image_findings` when already computed (the app's image findings operator)."""
    settings = settings if settings is not None else ScoringSettings()
    image = image if image is not None else image_findings(pre, regions)
    t0 = time.perf_counter()
    aligned = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask)
    spacing = pre.aligned.GetSpacing()
    findings = image.findings
    segmented = sitk.GetArrayFromImage(infarct.mask) > 0
    # an old infarct's cavity as the slices show it (thick slices blur it on the aligned grid)
    marked = with_cavity(findings, source_cavity(pre, segmented, brain, infarct.asymmetry.counterpart,
                                                   findings.mirror_floor_hu), segmented)
    if marked is not findings:
        log.info("old infarct cavity seen on the source slices beside the acute mask: %.1f ml added to the old infarct",
                 (marked.old_infarct.sum() - findings.old_infarct.sum()) * np.prod(spacing) / 1000.0)
    findings = marked
    flags = image_flags(findings)
    acute = acute_only(segmented, findings)
    if acute.sum() < segmented.sum():
        log.info("%.1f ml of hypodensity explained by old infarct / haemorrhage: not scored",
                 (segmented.sum() - acute.sum()) * np.prod(spacing) / 1000.0)
    if settings.grow_into_asymmetry and infarct.support is not None and acute.any():
        # grown after the exclusions (a haematoma's mirror is never grown from), and only into
        # asymmetry that blood or an old infarct does not explain
        grown = grow_into_support(acute, growable(infarct.support, findings), settings.grow_min_share)
        if grown.sum() > acute.sum():
            log.info("acute infarct grown by %.1f ml into the asymmetry it sits in",
                     (grown.sum() - acute.sum()) * np.prod(spacing) / 1000.0)
        acute = grown
        if settings.edge_fraction is not None:
            edged = lesion_edge(acute, infarct.asymmetry.difference, settings.edge_fraction, settings.edge_min_core_hu)
            if edged.sum() < acute.sum():
                log.info("%.1f ml below %.0f %% of their lesion's own darkening cut from the lesions' edges",
                         (acute.sum() - edged.sum()) * np.prod(spacing) / 1000.0, 100 * settings.edge_fraction)
            acute = edged
    labels_aligned = sitk.GetArrayFromImage(regions.labels)
    outside = outside_mca_mask(acute, labels_aligned, sitk.GetArrayFromImage(regions.territories), spacing)
    outside_flag = mask_flag(OUTSIDE_MCA, outside, spacing)
    if outside_flag is not None:  # ACA / PCA / posterior circulation infarct
        flags.append(outside_flag)
    acute_img = sitk.GetImageFromArray(acute.astype(np.uint8))
    acute_img.CopyInformation(infarct.mask)
    geometry = series.volume.geometry
    regions_src = to_slices(pre, regions.labels, geometry, label=True).astype(np.uint8)
    infarct_src = to_slices(pre, acute_img, geometry, label=True) > 0
    located = located_findings(pre, {**flagged_masks(findings), OUTSIDE_MCA: outside}, acute_img, geometry)
    evidence, calls, checks = study_evidence(findings, infarct.asymmetry.difference, infarct.asymmetry.comparable,
                                             labels_aligned, settings.calibration, acute, hu=aligned, brain=brain)
    coverage = pre.coverage or {}
    result = score(regions_src, infarct_src, (), settings.fraction_threshold, settings.ml_threshold,
                   assessable=assessable_regions(coverage), slice_ml=geometry.slice_ml(),
                   evidence=evidence, evidence_calls=calls, mask_checks=checks,
                   mask_support=settings.calibration.mask_support if settings.calibration is not None else None,
                   marginal_band=settings.marginal_band, evidence_mask_floor=settings.evidence_mask_floor)
    by_evidence = [f"{s} {c}" for s, per in result.regions.items() for c, f in per.items() if f.evidence_called]
    if by_evidence:
        log.info("region evidence calls early ischaemic change in %s", ", ".join(by_evidence))
    no_mask = [f"{s} {c} ({100 * f.infarct_fraction:.1f} %)" for s, per in result.regions.items()
               for c, f in per.items() if f.evidence_without_mask]
    if no_mask:
        log.info("region evidence without the acute mask in the region (not called): %s", ", ".join(no_mask))
    withdrawn = [f"{s} {c} ({f.evidence.volume_loss:+.3f})" for s, per in result.regions.items()
                 for c, f in per.items() if f.withdrawn_calls and f.evidence is not None]
    if withdrawn:
        log.info("volume loss (wider CSF spaces than the mirror: chronic) withdraws the call in %s", ", ".join(withdrawn))
    unsupported = [f"{s} {c} ({100 * f.infarct_fraction:.0f} %, {f.evidence.delta_hu:+.2f} HU)"
                   for s, per in result.regions.items() for c, f in per.items()
                   if f.unsupported_mask_call and f.evidence is not None and f.evidence.delta_hu is not None]
    if unsupported:
        log.info("mask call without support from the region's mean difference (not called): %s", ", ".join(unsupported))
    marginal = [f"{s} {c} ({100 * f.infarct_fraction:.0f} %, {'called' if f.involved else 'not called'})"
                for s, per in result.regions.items() for c, f in per.items() if f.marginal]
    if marginal:
        ranges = result.aspects_range()
        log.info("marginal calls (the mask near its threshold): %s; ASPECTS range %s", ", ".join(marginal),
                 ", ".join(f"{s} {r[0]}-{r[1]}" for s, r in ranges.items() if r is not None))
    flag_names: List[str] = [f.name for f in flags]
    # The findings are counted on the aligned grid, whose ml are the template's; reported in the
    # patient's ml, as the infarct volume is (the affine's volume ratio, aligned -> source).
    to_patient_ml = patient_ml_ratio(pre.qc)
    flag_details: Dict[str, Dict[str, Any]] = {f.name: {"volume_ml": round(f.volume_ml * to_patient_ml, 3)}
                                               for f in flags}
    if findings.extra_axial_ml > 0:  # the haemorrhage's part between the brain and the skull
        flag_details["haemorrhage_suspected"]["extra_axial_ml"] = round(findings.extra_axial_ml * to_patient_ml, 3)
    for name, number in finding_segment_numbers(list(located)).items():
        flag_details[name]["seg_segment"] = number  # where the SEG shows it
    missing = result.not_assessable
    if missing:
        flag_names.append(INCOMPLETE_COVERAGE)
        covered = {m: round(coverage.get(label_value(*m.split(" ")), 1.0), 3) for m in missing}
        flag_details[INCOMPLETE_COVERAGE] = {"regions": missing, "covered_fraction": covered}
        log.warning("the series does not cover %s: not assessable, no ASPECTS for that side",
                    ", ".join(f"{m} ({100 * c:.0f}% covered)" for m, c in covered.items()))
    qc = dict(pre.qc or {})
    if findings.white_matter_hu is not None:  # where the study's tissue reads (scanner calibration)
        qc["white_matter_hu"] = round(findings.white_matter_hu, 1)
    if qc.get("low_confidence"):
        flag_names.append("low_confidence")
    seconds = time.perf_counter() - t0
    log.info("ASPECTS right %s, left %s; affected side %s; infarct %.1f ml; flags %s",
             result.aspects["right"], result.aspects["left"], result.affected_side,
             result.infarct_volume_ml, flag_names or "none")
    record("preprocess", (pre.timings or {}).get("total_s", 0.0))
    record("infarct", float(infarct.info.get("seconds", 0.0)))  # type: ignore[arg-type]
    record("regions", regions.seconds)
    record("findings", image.seconds)
    record("scoring", seconds)
    timings = snapshot()
    timings.update({f"preprocess_{k[:-2] if k.endswith('_s') else k}": v
                    for k, v in (pre.timings or {}).items() if k != "total_s"})
    document = result_document(
        result, study_uid=series.study_uid, series_uid=series.series_uid, flags=flag_names, flag_details=flag_details,
        qc=qc, thresholds=settings.thresholds(), methods=methods_of(regions, infarct), device=infarct.device,
        timings=timings)
    return ScoredStudy(document=document, infarct=infarct_src, regions=regions_src, source=series.datasets,
                       findings=located)


def located_findings(pre: Preprocessed, masks: Dict[str, np.ndarray], like: sitk.Image,
                     geometry: SliceGeometry) -> Dict[str, np.ndarray]:
    """The flagged findings' masks by flag name (aligned grid ``like``: the haemorrhage and old
    infarct of :func:`aspects.flags.flagged_masks`, the acute infarct outside the MCA territory)
    sampled on the source slices, as the infarct mask is; those empty there are dropped."""
    out = {}
    for name, mask in masks.items():
        if not mask.any():
            continue
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.CopyInformation(like)
        on_slices = to_slices(pre, img, geometry, label=True) > 0
        if on_slices.any():
            out[name] = on_slices
    return out
