"""DICOM SR (TID 1500 Measurement Report) of the ASPECTS result, and a reader for it.

Content (Comprehensive 3D SR, highdicom):
- procedure reported: SCT 303653007 "Computed tomography of head";
- one measurement group per hemisphere: ASPECTS (NUM, private code ``99ASPECTS ASPECTS``,
  unit UCUM ``{score}``), finding site cerebral hemisphere + laterality, source images = the
  BG and SG key slices;
- one "acute infarct" group: infarct volume (SCT Volume, UCUM ``ml``) and the affected side
  (qualitative evaluation ``99ASPECTS AFFSIDE``: SCT Right / Left / None);
- one group per region (20): involvement (``99ASPECTS ISCHCHG``: SCT Yes / No), infarct
  fraction (``99ASPECTS INFFRAC``, UCUM ``%``) and infarct volume (ml), finding site = the
  region (codes of :mod:`aspects.dicom_seg`) with laterality;
- given the SEG, the infarct and region groups are TID 1411 volumetric ROI groups that
  reference their SEG segment (1 = infarct, label + 1 = region), and the SEG joins the evidence;
- a "Qualitative Evaluations" container with TEXT comments: the not-for-diagnostic-use note,
  the methods and the flags;
- image library = the key slices; evidence (CurrentRequestedProcedureEvidence) = every source image.
No standard code for "ASPECTS" was found (SNOMED CT, LOINC, RadLex in pydicom's tables), hence
the private scheme declared in the CodingSchemeIdentificationSequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from aspects.derived import (
    DISCLAIMER,
    SERIES_NUMBER,
    Equipment,
    aspects_code,
    check_source,
    coding_scheme_identification,
    copy_patient_study,
    mark_derived,
    new_uid,
)
from aspects.dicom_seg import INFARCT_CODE, INFARCT_SEGMENT, REGION_TYPE, SIDE_CODE, region_segment_number
from aspects.labels import REGION_CODES, SIDES, label_value
from aspects.result_json import ResultSchemaError

ASPECTS_CODE = aspects_code("ASPECTS", "Alberta Stroke Program Early CT Score")
AFFECTED_SIDE_CODE = aspects_code("AFFSIDE", "Affected hemisphere")
INVOLVED_CODE = aspects_code("ISCHCHG", "Early ischaemic change in region")
FRACTION_CODE = aspects_code("INFFRAC", "Infarct fraction of region")
PROCEDURE_CODE = Code("303653007", "SCT", "Computed tomography of head")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
UNIT_SCORE = Code("{score}", "UCUM", "score")
UNIT_ML = Code("ml", "UCUM", "milliliter")
UNIT_PERCENT = codes.UCUM.Percent
FINDING_SITE = codes.SCT.FindingSite
LATERALITY = codes.SCT.Laterality


def _observation_context(equipment: Equipment) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        # Same device UID for every report of one app version.
        uid=generate_uid(entropy_srcs=[equipment.name, equipment.version]),
        name=equipment.name,
        manufacturer_name=equipment.manufacturer,
        model_name=equipment.model_name,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


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


def measurement_groups(
    result: Mapping,
    equipment: Equipment,
    key_sources: Sequence[Dataset] = (),
    seg: Optional[Dataset] = None,
) -> list:
    """Groups for the hemispheres, the infarct and the 20 regions.

    With ``seg`` (the SEG of :mod:`aspects.dicom_seg`), the infarct and region groups are
    volumetric ROI groups that reference their SEG segment.
    """
    algorithm = hd.sr.AlgorithmIdentification(name=equipment.name, version=equipment.version)
    key_refs = [hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in key_sources] or None
    groups = []
    for side in SIDES:
        site = hd.sr.FindingSite(codes.SCT.CerebralHemisphere, laterality=SIDE_CODE[side])
        groups.append(
            _group(
                f"ASPECTS {side}",
                algorithm,
                finding_sites=[site],
                # A side with a region the series does not cover has no ASPECTS (schema 2: null).
                measurements=None if result["aspects"][side] is None
                else [_measurement(ASPECTS_CODE, int(result["aspects"][side]), UNIT_SCORE)],
                source_images=key_refs,
            )
        )
    side_value = SIDE_CODE.get(result.get("affected_side") or "", codes.SCT.None_)
    groups.append(
        _group(
            "Acute infarct",
            algorithm,
            _segment_ref(seg, INFARCT_SEGMENT),
            finding_type=INFARCT_CODE,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            measurements=[_measurement(codes.SCT.Volume, round(float(result["infarct_volume_ml"]), 3), UNIT_ML)],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(AFFECTED_SIDE_CODE, side_value)],
        )
    )
    for side in SIDES:
        for code in REGION_CODES:
            region = result["regions"][side][code]
            site = hd.sr.FindingSite(REGION_TYPE[code][0], laterality=SIDE_CODE[side])
            groups.append(
                _group(
                    f"{side} {code}",
                    algorithm,
                    _segment_ref(seg, region_segment_number(label_value(side, code))),
                    finding_sites=[site],
                    measurements=[
                        _measurement(FRACTION_CODE, round(100.0 * float(region["infarct_fraction"]), 2), UNIT_PERCENT),
                        _measurement(codes.SCT.Volume, round(float(region["infarct_ml"]), 3), UNIT_ML),
                    ],
                    qualitative_evaluations=None if region["involved"] is None else [  # None: not assessable
                        hd.sr.QualitativeEvaluation(INVOLVED_CODE, codes.SCT.Yes if region["involved"] else codes.SCT.No)
                    ],
                )
            )
    return groups


def _comments(result: Mapping) -> hd.sr.ContainerContentItem:
    """TID 1500 'Qualitative Evaluations' container holding free-text notes."""
    methods = result.get("methods", {})
    notes = [
        DISCLAIMER,
        f"Methods: regions by {methods.get('regions', 'unknown')}, infarct by {methods.get('infarct', 'unknown')}.",
        "Flags: " + (", ".join(result.get("flags", [])) or "none") + ".",
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


def build_sr(
    source: Sequence[Dataset],
    result: Mapping,
    key_sources: Sequence[Dataset] = (),
    seg: Optional[Dataset] = None,
) -> hd.sr.Comprehensive3DSR:
    """The SR dataset for ``result`` (aspects.json content) about the ``source`` series.

    ``key_sources``: the key slices the hemisphere groups cite; ``seg``: the SEG whose segments
    the infarct/region groups reference (it then joins the evidence).
    """
    check_source(source)
    missing = [k for k in ("aspects", "affected_side", "infarct_volume_ml", "regions") if k not in result]
    if missing:
        raise ResultSchemaError(f"cannot write the SR: result lacks {', '.join(missing)}")
    equipment = Equipment.from_result(result)
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(equipment),
        procedure_reported=PROCEDURE_CODE,
        imaging_measurements=measurement_groups(result, equipment, key_sources, seg),
        # The library lists the images the groups cite; all source images are the evidence
        # (an entry per slice would cost ~30 ms each in highdicom for no reader benefit).
        referenced_images=list(key_sources) or None,
    )
    report[0].ContentSequence.append(_comments(result))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(source) + ([seg] if seg is not None else []),
        content=report[0],
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


def _group_side(group: Dataset) -> Optional[str]:
    for item in group.get("ContentSequence", []):
        if _concept(item) == _key(FINDING_SITE):
            for mod in item.get("ContentSequence", []):
                if _concept(mod) == _key(LATERALITY):
                    value = str(mod.ConceptCodeSequence[0].CodeValue)
                    return {SIDE_CODE[s].value: s for s in SIDES}.get(value)
    return None


def _num(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def read_sr_summary(path: Path) -> Dict:
    """ASPECTS per side, affected side and infarct volume from an SR written by :func:`write_sr`."""
    ds = pydicom.dcmread(str(path))
    out: Dict = {"aspects": {}, "affected_side": None, "infarct_volume_ml": None}
    for group in _groups(ds):
        side = _group_side(group)
        # The infarct group is the one whose finding type (a CODE item) is Infarct.
        is_infarct = any(
            i.ValueType == "CODE" and str(i.ConceptCodeSequence[0].CodeValue) == INFARCT_CODE.value
            for i in group.get("ContentSequence", [])
        )
        for item in group.get("ContentSequence", []):
            concept = _concept(item)
            if concept == _key(ASPECTS_CODE) and side:
                out["aspects"][side] = int(round(_num(item)))
            elif concept == _key(AFFECTED_SIDE_CODE):
                value = str(item.ConceptCodeSequence[0].CodeValue)
                out["affected_side"] = {SIDE_CODE[s].value: s for s in SIDES}.get(value)
            elif concept == _key(codes.SCT.Volume) and is_infarct:
                out["infarct_volume_ml"] = _num(item)
    return out


def read_aspects_from_sr(path: Path) -> Dict[str, int]:
    """``{"left": int, "right": int}`` from an ASPECTS SR; ValueError if it holds none."""
    aspects = read_sr_summary(path)["aspects"]
    if set(aspects) != set(SIDES):
        raise ValueError(f"{path}: not an ASPECTS SR (ASPECTS found for {sorted(aspects) or 'no side'})")
    return {"left": aspects["left"], "right": aspects["right"]}
