"""DICOM SR (TID 1500 Measurement Report) of the ASPECTS result, and a reader for it.

Comprehensive 3D SR through highdicom: the overall and per-hemisphere ASPECTS, the affected side,
the infarct volume, per region its volume, infarct fraction, evidence and involvement (or "not
assessable"), and the infarct volume inside it as its own finding, referencing the SEG segments.
Every group, code and reader check: docs/dicom.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from aspects.derived import (
    DISCLAIMER,
    SERIES_NUMBER,
    Equipment,
    aspects_code,
    check_source,
    coding_scheme_identification,
    copy_patient_study,
    device_observer,
    flag_volume_text,
    mark_derived,
    new_uid,
)
from aspects.dicom_seg import FINDING_TYPE, INFARCT_CODE, INFARCT_SEGMENT, REGION_TYPE, SIDE_CODE, region_segment_number
from aspects.labels import FINDING_LABELS, FINDINGS, REGION_CODES, SIDES, label_value
from aspects.methods import methods_text
from aspects.result_json import ResultSchemaError

# SNOMED CT 1290002002 |Alberta Stroke Program Early CT score (assessment scale)|: not in
# pydicom's / highdicom's code dictionaries (they hold DICOM context-group codes only); the code
# is the one of the IHE PCC mPSC "Stroke Scale Type" value set (docs/dicom.md).
ASPECTS_CODE = Code("1290002002", "SCT", "Alberta Stroke Program Early CT score")
AFFECTED_SIDE_CODE = aspects_code("AFFSIDE", "Affected hemisphere")
INVOLVED_CODE = aspects_code("ISCHCHG", "Early ischaemic change in region")
FRACTION_CODE = aspects_code("INFFRAC", "Infarct fraction of region")
HU_DIFF_CODE = aspects_code("HUDIFF", "Attenuation difference to mirrored region")
EVIDENCE_Z_CODE = aspects_code("EVZ", "Region evidence score")
PARTIAL_DIFF_CODE = aspects_code("HUDIFFP", "Attenuation difference of darkest part to mirrored region")
PARTIAL_Z_CODE = aspects_code("EVZP", "Partial-region evidence score")
MASKED_DIFF_CODE = aspects_code("HUDIFFM", "Attenuation difference of infarct in region to mirror")
VOLUME_LOSS_CODE = aspects_code("VOLLOSS", "CSF-density share of region over mirrored region")
MARGINAL_CODE = aspects_code("MARGINAL", "Call near involvement threshold")
NOT_COUNTED_CODE = aspects_code("NOTCOUNTED", "Region call not counted")
MASK_UNSUPPORTED = aspects_code("MASKUNSUP", "Region not darker than mirrored region")
VOLUME_LOSS_VETO = aspects_code("VOLLOSSV", "Volume loss of chronic change")
EVIDENCE_NO_MASK = aspects_code("EVNOMASK", "Region evidence without infarct mask")
RANGE_LOW_CODE = aspects_code("ASPLOW", "ASPECTS with marginal calls counted as involved")
RANGE_HIGH_CODE = aspects_code("ASPHIGH", "ASPECTS with marginal calls counted as not involved")
UNIT_HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
UNIT_ONE = Code("1", "UCUM", "no units")
NOT_ASSESSABLE = aspects_code("NOTASSESS", "Not assessable")
PROCEDURE_CODE = Code("303653007", "SCT", "Computed tomography of head")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
UNIT_SCORE = Code("{score}", "UCUM", "score")
UNIT_ML = Code("ml", "UCUM", "milliliter")
UNIT_PERCENT = codes.UCUM.Percent
FINDING_SITE = codes.SCT.FindingSite
LATERALITY = codes.SCT.Laterality
OVERALL_ID = "ASPECTS"
INFARCT_ID = "Acute infarct"


def _group(
    identifier: str,
    algorithm: hd.sr.AlgorithmIdentification,
    segment: Optional[hd.sr.ReferencedSegment] = None,
    **kwargs,
):
    """TID 1501 group, or TID 1411 volumetric ROI group when it measures a SEG segment."""
    tracking = hd.sr.TrackingIdentifier(uid=new_uid(), identifier=identifier)
    if segment is not None:
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_segment=segment, algorithm_id=algorithm, **kwargs
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(tracking_identifier=tracking, algorithm_id=algorithm, **kwargs)


def _segment_ref(seg: Optional[Dataset], number: int) -> Optional[hd.sr.ReferencedSegment]:
    if seg is None:
        return None
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
    )


def _measurement(name: Code, value: float, unit: Code, **kwargs) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, **kwargs)


def _volume(ml: float) -> hd.sr.Measurement:
    return _measurement(codes.SCT.Volume, round(float(ml), 3), UNIT_ML)


def assessable(region: Mapping) -> bool:
    """A region entry is assessable unless it says ``"assessable": false`` (schema 1 has no key)."""
    return region.get("assessable", True) is not False


def _aspects_items(value: Optional[int], span: Optional[Sequence[int]] = None) -> dict:
    """The ASPECTS as a number (with ``span``, its range over the marginal calls), or the coded
    "not assessable" when it is null."""
    if value is None:
        return {"qualitative_evaluations": [hd.sr.QualitativeEvaluation(ASPECTS_CODE, NOT_ASSESSABLE)]}
    measurements = [_measurement(ASPECTS_CODE, int(value), UNIT_SCORE)]
    if span is not None:
        measurements += [_measurement(RANGE_LOW_CODE, int(span[0]), UNIT_SCORE),
                         _measurement(RANGE_HIGH_CODE, int(span[1]), UNIT_SCORE)]
    return {"measurements": measurements}


def _involvement(region: Mapping) -> Code:
    if not assessable(region):
        return NOT_ASSESSABLE
    return codes.SCT.Yes if region["involved"] else codes.SCT.No


def _call_notes(region: Mapping) -> List[hd.sr.QualitativeEvaluation]:
    """A marginal call, and a mask call not counted (and why), where aspects.json says so."""
    notes = []
    if region.get("marginal"):
        notes.append(hd.sr.QualitativeEvaluation(MARGINAL_CODE, codes.SCT.Yes))
    if region.get("unsupported_mask_call"):
        notes.append(hd.sr.QualitativeEvaluation(NOT_COUNTED_CODE, MASK_UNSUPPORTED))
    if region.get("withdrawn_calls"):
        notes.append(hd.sr.QualitativeEvaluation(NOT_COUNTED_CODE, VOLUME_LOSS_VETO))
    if region.get("evidence_without_mask"):
        notes.append(hd.sr.QualitativeEvaluation(NOT_COUNTED_CODE, EVIDENCE_NO_MASK))
    return notes


def _evidence_measurements(evidence: Optional[Mapping]) -> List[hd.sr.Measurement]:
    """The region's comparison with its mirror (whole-region and partial-region HU difference,
    their calibrated scores, the volume loss) where computed."""
    if not evidence:
        return []
    out = []
    for key, code, unit in (("delta_hu", HU_DIFF_CODE, UNIT_HU), ("z", EVIDENCE_Z_CODE, UNIT_ONE),
                            ("partial_hu", PARTIAL_DIFF_CODE, UNIT_HU), ("partial_z", PARTIAL_Z_CODE, UNIT_ONE)):
        if evidence.get(key) is not None:
            out.append(_measurement(code, round(float(evidence[key]), 2), unit))
    if evidence.get("volume_loss") is not None:  # a share; in percent like the infarct fraction
        out.append(_measurement(VOLUME_LOSS_CODE, round(100.0 * float(evidence["volume_loss"]), 2), UNIT_PERCENT))
    return out


def _mask_check_measurements(check: Optional[Mapping]) -> List[hd.sr.Measurement]:
    """The darkening of the region's masked tissue against its mirror (the mask check,
    aspects.region_evidence.mask_checks) where computed."""
    if not check or check.get("masked_hu") is None:
        return []
    return [_measurement(MASKED_DIFF_CODE, round(float(check["masked_hu"]), 2), UNIT_HU)]


def _region_site(side: str, code: str) -> hd.sr.FindingSite:
    return hd.sr.FindingSite(REGION_TYPE[code][0], laterality=SIDE_CODE[side])


def _region_groups(result: Mapping, algorithm: hd.sr.AlgorithmIdentification, seg: Optional[Dataset]) -> list:
    """Per region: the region's own group, then the group of the infarct inside it."""
    groups = []
    for side in SIDES:
        for code in REGION_CODES:
            region = result["regions"][side][code]
            measurements = [] if region.get("region_ml") is None else [_volume(region["region_ml"])]
            measurements.append(
                _measurement(FRACTION_CODE, round(100.0 * float(region["infarct_fraction"]), 2), UNIT_PERCENT)
            )
            measurements += _evidence_measurements(region.get("evidence"))
            groups.append(
                _group(
                    f"{side} {code}",
                    algorithm,
                    _segment_ref(seg, region_segment_number(label_value(side, code))),
                    finding_sites=[_region_site(side, code)],
                    measurements=measurements,
                    qualitative_evaluations=[hd.sr.QualitativeEvaluation(INVOLVED_CODE, _involvement(region)),
                                             *_call_notes(region)],
                )
            )
            groups.append(
                _group(
                    f"{INFARCT_ID} in {side} {code}",
                    algorithm,
                    finding_type=INFARCT_CODE,
                    finding_sites=[_region_site(side, code)],
                    measurements=[_volume(region["infarct_ml"])] + _mask_check_measurements(region.get("mask_check")),
                )
            )
    return groups


def measurement_groups(
    result: Mapping,
    equipment: Equipment,
    key_sources: Sequence[Dataset] = (),
    seg: Optional[Dataset] = None,
) -> list:
    """Groups for the overall ASPECTS, the hemispheres, the infarct, the located flagged findings
    and the 20 regions.

    With ``seg`` (the SEG of :mod:`aspects.dicom_seg`), the infarct, finding and region groups
    are volumetric ROI groups that reference their SEG segment.
    """
    algorithm = hd.sr.AlgorithmIdentification(name=equipment.name, version=equipment.version)
    key_refs = [hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in key_sources] or None
    side_value = SIDE_CODE.get(result.get("affected_side") or "", codes.SCT.None_)
    overall = _aspects_items(result["score"])
    overall.setdefault("qualitative_evaluations", []).append(hd.sr.QualitativeEvaluation(AFFECTED_SIDE_CODE, side_value))
    groups = [
        _group(
            OVERALL_ID, algorithm, finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)], source_images=key_refs, **overall
        )
    ]
    for side in SIDES:
        site = hd.sr.FindingSite(codes.SCT.CerebralHemisphere, laterality=SIDE_CODE[side])
        groups.append(
            _group(
                f"ASPECTS {side}",
                algorithm,
                finding_sites=[site],
                source_images=key_refs,
                **_aspects_items(result["aspects"][side], (result.get("aspects_range") or {}).get(side)),
            )
        )
    groups.append(
        _group(
            INFARCT_ID,
            algorithm,
            _segment_ref(seg, INFARCT_SEGMENT),
            finding_type=INFARCT_CODE,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            measurements=[_volume(result["infarct_volume_ml"])],
        )
    )
    return groups + _finding_groups(result, algorithm, seg) + _region_groups(result, algorithm, seg)


def _finding_groups(result: Mapping, algorithm: hd.sr.AlgorithmIdentification, seg: Optional[Dataset]) -> list:
    """One group per flagged finding the app locates (``aspects.labels.FINDINGS``): its volume,
    tracked by its SEG segment's label, referencing that segment where the SEG has it."""
    details = result.get("flag_details") or {}
    groups = []
    for name in FINDINGS:
        detail = details.get(name) or {}
        if name not in result.get("flags", []) or detail.get("volume_ml") is None:
            continue
        number = detail.get("seg_segment")
        groups.append(
            _group(
                FINDING_LABELS[name],
                algorithm,
                _segment_ref(seg, int(number)) if number is not None else None,
                finding_type=FINDING_TYPE[name][0],
                finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
                measurements=[_volume(detail["volume_ml"])],
            )
        )
    return groups


def coverage_notes(result: Mapping) -> List[str]:
    """Why an ASPECTS is missing from the numbers: the sides whose regions are not assessable."""
    notes = []
    why = " (incomplete coverage)" if "incomplete_coverage" in result.get("flags", []) else ""
    for side in SIDES:
        missing = [c for c in REGION_CODES if not assessable(result["regions"][side][c])]
        if result["aspects"][side] is None:
            what = ", ".join(f"{side} {c}" for c in missing) or "unknown regions"
            notes.append(f"ASPECTS {side} not reported: region(s) {what} not assessable{why}.")
    if result["score"] is None:
        notes.append("Overall ASPECTS not reported: the ASPECTS it is taken from is not assessable.")
    return notes


def range_notes(result: Mapping) -> List[str]:
    """The ASPECTS range per side and its marginal calls, where any call is marginal."""
    ranges = result.get("aspects_range") or {}
    notes = []
    for side in SIDES:
        span, value = ranges.get(side), result["aspects"][side]
        marginal = [f"{side} {c} {100 * float(r['infarct_fraction']):.0f} % ({'involved' if r['involved'] else 'not involved'})"
                    for c, r in result["regions"][side].items() if r.get("marginal")]
        if span is not None and marginal:
            notes.append(f"ASPECTS {side} {value}, range {span[0]}-{span[1]}: marginal call(s), the infarct mask "
                         "near the involvement threshold: " + ", ".join(marginal) + ".")
    return notes


def flag_texts(result: Mapping) -> List[str]:
    """Each flag of aspects.json by its name (what a script searches for), with its volume where
    ``flag_details`` has one: "haemorrhage_suspected (0.5 ml)" (:func:`aspects.derived.flag_volume_text`)."""
    details = result.get("flag_details") or {}
    texts = []
    for name in result.get("flags", []):
        volume = flag_volume_text(details.get(name))
        texts.append(name if volume is None else f"{name} ({volume})")
    return texts


def low_confidence_notes(result: Mapping) -> List[str]:
    """Why the study is ``low_confidence`` (aspects.json ``qc.reasons``), as the key images'
    banner says it: one note, or none."""
    reasons = (result.get("qc") or {}).get("reasons") or []
    if "low_confidence" not in result.get("flags", []) or not reasons:
        return []
    return ["Low confidence: " + "; ".join(str(r) for r in reasons) + "."]


def _comments(result: Mapping) -> hd.sr.ContainerContentItem:
    """TID 1500 'Qualitative Evaluations' container holding free-text notes."""
    methods = result.get("methods", {})
    notes = [
        DISCLAIMER,
        methods_text(methods),
        "Flags: " + (", ".join(flag_texts(result)) or "none") + ".",
        *low_confidence_notes(result),
        *coverage_notes(result),
        *range_notes(result),
    ]
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
            for text in notes
        ]
    )
    return container


REQUIRED = ("aspects", "score", "affected_side", "infarct_volume_ml", "regions")


class _HandedOver(hd.sr.ContainerContentItem):
    """The report's root content item, handed to the SR object instead of copied.

    highdicom's SR constructor deep-copies its ``content`` so that the caller's tree and the SR's
    do not share objects, then converts the copy in place; ``build_sr`` makes the tree for the SR
    alone and drops it, so the copy (a few thousand pydicom elements: 0.2 s of a 5 mm study's
    critical path, 0.5 s of a thin one's, docs/performance.md) is work for nothing. The copy's
    conversion sets the item's class back to ContainerContentItem; the SR's elements and bytes
    are the same as with the copy (tests/test_writers.py)."""

    def __deepcopy__(self, memo):
        return self


def _handed_over(item: Dataset) -> Dataset:
    if type(item) is hd.sr.ContainerContentItem:
        item.__class__ = _HandedOver
    return item


def build_sr(
    source: Sequence[Dataset],
    result: Mapping,
    key_sources: Sequence[Dataset] = (),
    seg: Optional[Dataset] = None,
) -> hd.sr.Comprehensive3DSR:
    """The SR dataset for ``result`` (aspects.json content) about the ``source`` series.

    ``key_sources``: the key slices the ASPECTS groups cite; ``seg``: the SEG whose segments
    the infarct/region groups reference (it then joins the evidence).
    """
    check_source(source)
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise ResultSchemaError(f"cannot write the SR: result lacks {', '.join(missing)}")
    equipment = Equipment.from_result(result)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer(equipment)),
        procedure_reported=PROCEDURE_CODE,
        imaging_measurements=measurement_groups(result, equipment, key_sources, seg),
        # The library lists the images the groups cite; all source images are the evidence
        # (an entry per slice would cost ~30 ms each in highdicom for no reader benefit).
        referenced_images=list(key_sources) or None,
    )
    report[0].ContentSequence.append(_comments(result))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(source) + ([seg] if seg is not None else []),
        content=_handed_over(report[0]),
        series_instance_uid=new_uid(),
        series_number=SERIES_NUMBER["sr"],
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer=equipment.manufacturer,
        is_complete=True,
    )
    copy_patient_study(source[0], sr)
    mark_derived(sr, equipment, "SR", image=False)
    sr.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    return sr


def write_sr(
    source: Sequence[Dataset],
    result: Mapping,
    path: Path,
    key_sources: Sequence[Dataset] = (),
    seg: Optional[Dataset] = None,
) -> Path:
    sr = build_sr(source, result, key_sources, seg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path)
    return path


# ---------------------------------------------------------------- reading


def _concept(item: Dataset) -> tuple:
    seq = item.get("ConceptNameCodeSequence")
    return (str(seq[0].CodeValue), str(seq[0].CodingSchemeDesignator)) if seq else ("", "")


def _value(item: Dataset) -> tuple:
    return (str(item.ConceptCodeSequence[0].CodeValue), str(item.ConceptCodeSequence[0].CodingSchemeDesignator))


def _key(code: Code) -> tuple:
    return (code.value, code.scheme_designator)


def _walk(items: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _groups(ds: Dataset) -> Iterator[Dataset]:
    for item in _walk(ds.get("ContentSequence", [])):
        if item.ValueType == "CONTAINER" and _concept(item) == _key(codes.DCM.MeasurementGroup):
            yield item


_SIDE_OF = {_key(SIDE_CODE[s]): s for s in SIDES}
_REGION_OF = {_key(REGION_TYPE[c][0]): c for c in REGION_CODES}
_NOT_COUNTED_OF = {_key(MASK_UNSUPPORTED): "unsupported_mask_call", _key(VOLUME_LOSS_VETO): "volume_loss",
                   _key(EVIDENCE_NO_MASK): "evidence_without_mask"}
_INVOLVED_OF = {_key(codes.SCT.Yes): True, _key(codes.SCT.No): False, _key(NOT_ASSESSABLE): None}


_FINDING_OF = {label: name for name, label in FINDING_LABELS.items()}


def _tracking_id(items: Sequence[Dataset]) -> Optional[str]:
    for item in items:
        if _concept(item) == _key(codes.DCM.TrackingIdentifier):
            return str(item.TextValue)
    return None


def _site(group: Dataset) -> tuple:
    """(finding site code key, side or None) of a measurement group."""
    for item in group.get("ContentSequence", []):
        if _concept(item) == _key(FINDING_SITE):
            side = None
            for mod in item.get("ContentSequence", []):
                if _concept(mod) == _key(LATERALITY):
                    side = _SIDE_OF.get(_value(mod))
            return _value(item), side
    return ("", ""), None


def _num(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _aspects_of(items: Sequence[Dataset]) -> tuple:
    """(found, value): the ASPECTS of a group, None when coded not assessable."""
    for item in items:
        if _concept(item) == _key(ASPECTS_CODE):
            return True, (int(round(_num(item))) if item.ValueType == "NUM" else None)
    return False, None


def read_sr_summary(path: Path) -> Dict:
    """What an SR written by :func:`write_sr` says, in aspects.json terms.

    ``aspects`` {side: int | None}, ``score`` (int | None), ``affected_side``,
    ``infarct_volume_ml`` and ``regions`` {side: {code: {"involved": bool | None,
    "infarct_fraction", "infarct_ml", "region_ml" (None when not reported), and
    "evidence_delta_hu" / "evidence_z" / "evidence_partial_hu" / "evidence_partial_z" where the
    region-level evidence is reported, "evidence_volume_loss" (a share) where the volume loss is,
    "mask_check_masked_hu" where the mask check is, "marginal" (True) where the call is
    marginal, "not_counted" ("unsupported_mask_call" / "volume_loss" / "evidence_without_mask") where a call was not
    counted}}}, ``aspects_range`` {side: [low, high]} where the SR holds the range, and
    ``findings`` {flag name: volume in ml} for the located flagged findings (suspected haemorrhage,
    suspected old infarct).
    """
    ds = pydicom.dcmread(str(path))
    out: Dict = {"aspects": {}, "score": None, "affected_side": None, "infarct_volume_ml": None, "regions": {},
                 "findings": {}}
    for group in _groups(ds):
        items = list(group.get("ContentSequence", []))
        tracked = _FINDING_OF.get(_tracking_id(items) or "")
        if tracked is not None:
            out["findings"][tracked] = [_num(i) for i in items if _concept(i) == _key(codes.SCT.Volume)][0]
            continue
        site, side = _site(group)
        is_infarct = any(i.ValueType == "CODE" and _value(i) == _key(INFARCT_CODE) for i in items)
        found, aspects = _aspects_of(items)
        for item in items:
            if _concept(item) == _key(AFFECTED_SIDE_CODE):
                out["affected_side"] = _SIDE_OF.get(_value(item))
        volumes = [_num(i) for i in items if _concept(i) == _key(codes.SCT.Volume)]
        if found:
            span = [int(round(_num(i))) for code in (RANGE_LOW_CODE, RANGE_HIGH_CODE)
                    for i in items if _concept(i) == _key(code)]
            if side:
                out["aspects"][side] = aspects
                if len(span) == 2:
                    out.setdefault("aspects_range", {})[side] = span
            else:
                out["score"] = aspects
        elif site in _REGION_OF and side:
            entry = out["regions"].setdefault(side, {}).setdefault(_REGION_OF[site], {"region_ml": None})
            if is_infarct:
                entry["infarct_ml"] = volumes[0]
                for item in items:
                    if _concept(item) == _key(MASKED_DIFF_CODE):
                        entry["mask_check_masked_hu"] = _num(item)
                continue
            entry["region_ml"] = volumes[0] if volumes else None
            for item in items:
                if _concept(item) == _key(FRACTION_CODE):
                    entry["infarct_fraction"] = _num(item) / 100.0
                elif _concept(item) == _key(INVOLVED_CODE):
                    entry["involved"] = _INVOLVED_OF.get(_value(item))
                elif _concept(item) == _key(HU_DIFF_CODE):
                    entry["evidence_delta_hu"] = _num(item)
                elif _concept(item) == _key(EVIDENCE_Z_CODE):
                    entry["evidence_z"] = _num(item)
                elif _concept(item) == _key(PARTIAL_DIFF_CODE):
                    entry["evidence_partial_hu"] = _num(item)
                elif _concept(item) == _key(PARTIAL_Z_CODE):
                    entry["evidence_partial_z"] = _num(item)
                elif _concept(item) == _key(VOLUME_LOSS_CODE):
                    entry["evidence_volume_loss"] = _num(item) / 100.0
                elif _concept(item) == _key(MARGINAL_CODE):
                    entry["marginal"] = _value(item) == _key(codes.SCT.Yes)
                elif _concept(item) == _key(NOT_COUNTED_CODE):
                    entry["not_counted"] = _NOT_COUNTED_OF.get(_value(item), "other")
        elif is_infarct and volumes:
            out["infarct_volume_ml"] = volumes[0]
    return out


def read_aspects_from_sr(path: Path) -> Dict[str, Optional[int]]:
    """``{"left": int | None, "right": int | None}`` from an ASPECTS SR; ValueError if it holds none."""
    aspects = read_sr_summary(path)["aspects"]
    if set(aspects) != set(SIDES):
        raise ValueError(f"{path}: not an ASPECTS SR (ASPECTS found for {sorted(aspects) or 'no side'})")
    return {"left": aspects["left"], "right": aspects["right"]}
