"""DICOM SEG of the acute infarct and the 20 ASPECTS regions (highdicom, BINARY).

Segment 1 is the infarct, segments 2..21 the regions (``label_value + 1``). BINARY, not LABELMAP,
because the infarct overlaps the regions and Debian's dcmtk/dicom3tools reject LABELMAP; every
one of these 21 is described even when empty, so readers always find them. A flagged finding
that the app locates (suspected haemorrhage, suspected old infarct: ``aspects.labels.FINDINGS``)
follows as segment 22 (and 23), present only when flagged, so that a reader sees where it is.
Codes and colours: docs/dicom.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.valuerep import PersonName

from aspects.derived import (
    SERIES_NUMBER,
    Equipment,
    aspects_code,
    check_source,
    coding_scheme_identification,
    copy_patient_study,
    mark_derived,
    new_uid,
)
from aspects.errors import EXIT_PROCESSING, InputError
from aspects.labels import (FINDING_COLOURS, FINDING_LABELS, FINDINGS, INFARCT_COLOUR, REGION_COLOURS, REGION_NAMES,
                            all_regions)

INFARCT_CODE = Code("55641003", "SCT", "Infarct")
# Segmented property type and primary anatomic structures per ASPECTS region code.
REGION_TYPE: Dict[str, Tuple[Code, Tuple[Code, ...]]] = {
    "C": (codes.SCT.CaudateNucleus, ()),
    "IC": (codes.SCT.InternalCapsule, ()),
    "I": (codes.SCT.Insula, ()),
    "L": (aspects_code("L", "Lentiform nucleus"), (codes.SCT.Putamen, codes.SCT.GlobusPallidus)),
    **{
        m: (aspects_code(m, f"ASPECTS {m} region"), (codes.SCT.CerebralCortex,))
        for m in ("M1", "M2", "M3", "M4", "M5", "M6")
    },
}
SIDE_CODE = {"right": codes.SCT.Right, "left": codes.SCT.Left}
# Segmented property type (and its modifier) of each located finding: a haemorrhage; an infarct,
# chronic (SCT qualifier value), so that no reader takes it for the acute infarct of segment 1.
FINDING_TYPE: Dict[str, Tuple[Code, Optional[Code]]] = {
    "haemorrhage_suspected": (codes.SCT.Hemorrhage, None),
    "old_infarct_suspected": (INFARCT_CODE, codes.SCT.Chronic),
}
N_SEGMENTS = 21  # infarct and regions, always present; the located findings follow
INFARCT_SEGMENT = 1
LEFT_SHADE = 0.6


def segment_colour(side: str, code: str) -> Tuple[int, int, int]:
    """RGB display colour of region ``code`` on ``side``: the region colour, darker on the left."""
    rgb = REGION_COLOURS[code]
    return rgb if side == "right" else tuple(int(round(LEFT_SHADE * v)) for v in rgb)  # type: ignore[return-value]


def region_segment_number(label: int) -> int:
    """SEG segment number of region label ``label`` (1..20)."""
    return label + 1


def finding_segment_numbers(flagged: Sequence[str]) -> Dict[str, int]:
    """SEG segment number of each located finding among ``flagged`` (aspects.json flag names,
    those whose mask is not empty on the source slices): N_SEGMENTS + 1, + 2 in FINDINGS order."""
    present = [name for name in FINDINGS if name in flagged]
    return {name: N_SEGMENTS + 1 + i for i, name in enumerate(present)}


def _algorithm(method: str, what: str, equipment: Equipment,
               run: Optional[Mapping[str, Any]] = None) -> hd.AlgorithmIdentificationSequence:
    """``run``: aspects.json's record of how a model ran (``methods.infarct_model`` /
    ``region_model``), carried as Algorithm Parameters (its version, input and mirror pass)."""
    family = codes.DCM.ArtificialIntelligence if method == "model" else codes.DCM.ImageProcessing
    parameters = {f"model_{k}" if k == "version" else k: str(v) for k, v in (run or {}).items() if v is not None}
    return hd.AlgorithmIdentificationSequence(
        name=f"{equipment.name} {what} ({method})"[:64], family=family, version=equipment.version,
        parameters=parameters or None,
    )


def segment_descriptions(methods: Mapping[str, Any], equipment: Equipment,
                         findings: Sequence[str] = ()) -> List[hd.seg.SegmentDescription]:
    """The 21 segment descriptions, infarct first, then the label table, then one per located
    finding in ``findings`` (:func:`finding_segment_numbers`)."""
    infarct = hd.seg.SegmentDescription(
        segment_number=INFARCT_SEGMENT,
        segment_label="Acute infarct",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=INFARCT_CODE,
        algorithm_type="AUTOMATIC",
        algorithm_identification=_algorithm(methods.get("infarct", "unknown"), "infarct", equipment,
                                            methods.get("infarct_model")),
        anatomic_regions=[codes.SCT.Head],
        display_color=hd.color.CIELabColor.from_rgb(*INFARCT_COLOUR),
    )
    out = [infarct]
    regions_alg = _algorithm(methods.get("regions", "unknown"), "regions", equipment, methods.get("region_model"))
    for region in all_regions():
        prop, structures = REGION_TYPE[region.code]
        desc = hd.seg.SegmentDescription(
            segment_number=region_segment_number(region.value),
            segment_label=f"{region.side.capitalize()} {region.code} ({REGION_NAMES[region.code]})"[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=prop,
            algorithm_type="AUTOMATIC",
            algorithm_identification=regions_alg,
            anatomic_regions=[codes.SCT.Head],
            primary_anatomic_structures=list(structures) or None,
            display_color=hd.color.CIELabColor.from_rgb(*segment_colour(region.side, region.code)),
        )
        # The modifier belongs inside the property type item (C.8.20-4).
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(SIDE_CODE[region.side])
        ]
        out.append(desc)
    rules = _algorithm("image processing", "findings", equipment)
    for name, number in finding_segment_numbers(findings).items():
        prop, modifier = FINDING_TYPE[name]
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=FINDING_LABELS[name],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=prop,
            algorithm_type="AUTOMATIC",
            algorithm_identification=rules,
            anatomic_regions=[codes.SCT.Head],
            display_color=hd.color.CIELabColor.from_rgb(*FINDING_COLOURS[name]),
        )
        if modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept.from_code(modifier)
            ]
        out.append(desc)
    return out


def _check_masks(source: Sequence[Dataset], infarct: np.ndarray, regions: np.ndarray,
                 findings: Mapping[str, np.ndarray]) -> None:
    check_source(source)
    shape = (len(source), int(source[0].Rows), int(source[0].Columns))
    unknown = sorted(set(findings) - set(FINDINGS))
    if unknown:
        raise InputError(EXIT_PROCESSING, f"no SEG segment for the finding(s) {', '.join(unknown)}")
    for name, arr in (("infarct", infarct), ("regions", regions), *findings.items()):
        if arr.shape != shape:
            raise InputError(EXIT_PROCESSING, f"{name} mask shape {arr.shape} does not match the source series {shape}")
    if regions.size and (regions.min() < 0 or regions.max() > 20):
        raise InputError(EXIT_PROCESSING, f"region labels must be 0..20, found {regions.min()}..{regions.max()}")


def segment_stack(infarct: np.ndarray, regions: np.ndarray, findings: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``(z, y, x, 21 + len(findings))`` 0/1 uint8 array: segment 1 = infarct, segment label+1 =
    region label, then one segment per mask of ``findings`` (in segment order).

    A view of a segment-major ``(21, z, y, x)`` array: each segment's plane is one contiguous
    block, which is how highdicom reads it frame by frame (and uint8 is the BINARY pixel type,
    so it casts nothing); a segment-last bool array made it copy every (rows, columns) frame out of
    a 21-strided layout. Only labelled voxels are written into a zeroed array: the pages of a
    segment's empty slices are never touched, so they take no memory (a 300-slice 512 x 512
    study: 1.6 GB as a dense stack). Slice by slice: whole-volume ``np.nonzero`` index arrays of a
    thin study's ~10 M labelled voxels took ~0.4 GB and 2x the time. The voxels are addressed by
    flat offsets (one index array per slice, not four): half the time of 4-D fancy indexing."""
    out = np.zeros((N_SEGMENTS + len(findings),) + regions.shape, dtype=np.uint8)  # calloc: untouched pages cost no memory
    flat = out.reshape(-1)  # a view: the array is contiguous
    plane_size = int(np.prod(regions.shape[1:], dtype=np.int64))
    for z in range(regions.shape[0]):
        plane = np.ascontiguousarray(regions[z]).reshape(-1)
        idx = np.flatnonzero(plane)
        if idx.size:
            flat[plane[idx].astype(np.intp) * regions.size + (z * plane_size + idx)] = 1
        idx = np.flatnonzero(infarct[z])
        if idx.size:
            flat[z * plane_size + idx] = 1
        for k, mask in enumerate(findings, start=N_SEGMENTS):
            idx = np.flatnonzero(mask[z])
            if idx.size:
                flat[k * regions.size + z * plane_size + idx] = 1
    return np.moveaxis(out, 0, -1)


class _Segmentation(hd.seg.Segmentation):
    """highdicom's SEG with a leaner overlap check for the app's 0/1 uint8 segment stack.

    highdicom decides SegmentsOverlap by summing the stack over its segments, which numpy does in
    64-bit integers: 8 bytes per source voxel (a 300-slice 512 x 512 study: 0.5 GB at once).
    Counting segment by segment into 8 bits gives the same answer (at most 23 segments < 255); any other
    input goes to highdicom's own check."""

    @classmethod
    def _check_and_cast_pixel_array(cls, pixel_array, segment_numbers, segmentation_type, dtype):
        if not (isinstance(pixel_array, np.ndarray) and pixel_array.ndim == 4 and pixel_array.dtype == np.uint8
                and len(segment_numbers) == pixel_array.shape[-1] < 255
                and segmentation_type == hd.seg.SegmentationTypeValues.BINARY):
            return super()._check_and_cast_pixel_array(pixel_array, segment_numbers, segmentation_type, dtype)
        if pixel_array.max() > 1:
            raise ValueError("the segment stack must be 0/1")
        count = np.zeros(pixel_array.shape[:-1], np.uint8)
        for k in range(pixel_array.shape[-1]):
            count += pixel_array[..., k]
        overlap = hd.seg.SegmentsOverlapValues.YES if count.max() > 1 else hd.seg.SegmentsOverlapValues.NO
        return pixel_array, overlap


def build_segmentation(
    source: Sequence[Dataset],
    infarct: np.ndarray,
    regions: np.ndarray,
    result: Optional[Mapping] = None,
    findings: Optional[Mapping[str, np.ndarray]] = None,
) -> hd.seg.Segmentation:
    """The SEG dataset; frames reference ``source`` (sorted slices, axis 0 of the masks).
    ``findings``: masks of located findings by flag name (:data:`aspects.labels.FINDINGS`); an
    empty one gets no segment."""
    findings = {name: mask for name, mask in (findings or {}).items() if mask.any()}
    _check_masks(source, infarct, regions, findings)
    numbers = finding_segment_numbers(list(findings))
    extra = [findings[name].astype(bool) for name in numbers]  # in segment order
    result = result or {}
    equipment = Equipment.from_result(result)
    # Only slices with a labelled pixel enter the (z, y, x, 21) stack: the frames of the
    # others would be omitted anyway, and the stack is 5.5 MB per 512 x 512 slice.
    labelled = infarct.any(axis=(1, 2)) | regions.any(axis=(1, 2))
    for mask in extra:
        labelled |= mask.any(axis=(1, 2))
    used = np.flatnonzero(labelled)
    # highdicom refuses a SEG without frames: with no pixel in any segment keep the empty ones.
    omit_empty = used.size > 0
    used = used if omit_empty else np.arange(len(source))
    seg = _Segmentation(
        source_images=[source[k] for k in used],
        pixel_array=segment_stack(infarct[used], regions[used], [m[used] for m in extra]),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(result.get("methods", {}), equipment, list(numbers)),
        series_instance_uid=new_uid(),
        series_number=SERIES_NUMBER["seg"],
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_versions,
        device_serial_number="0",
        content_description="ASPECTS infarct and regions",
        content_label="ASPECTS",
        # The app as a one-component name; the trailing caret marks it as such (PS3.5 6.2.1).
        content_creator_name=PersonName(f"{equipment.name}^"),
        omit_empty_frames=omit_empty,
    )
    copy_patient_study(source[0], seg)
    mark_derived(seg, equipment, "SEG")
    seg.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    return seg


def write_seg(
    source: Sequence[Dataset],
    infarct: np.ndarray,
    regions: np.ndarray,
    result: Optional[Mapping],
    path: Path,
    findings: Optional[Mapping[str, np.ndarray]] = None,
) -> Path:
    """Build and save the SEG to ``path`` (parent folders created)."""
    seg = build_segmentation(source, infarct, regions, result, findings)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path
