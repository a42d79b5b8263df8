"""Key Object Selection document (KOS, TID 2010) that flags the app's key objects in a PACS.

A PACS or viewer shows the instances a KOS "Of Interest" (DCM 113000) references as key images
of the study. This one references, in this order:
- the two source CT slices of the ASPECTS levels (basal ganglia, supraganglionic): the slices
  the key images are made from, so the original images are flagged too;
- the two key images (secondary captures with region outlines and the infarct);
- the SR (TID 1500) with the ASPECTS, and the SEG with the infarct and region masks.
The observer is the app (device), as in the SR; a Key Object Description says what was chosen
and that it is not for diagnostic use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from aspects.derived import (
    DISCLAIMER,
    SERIES_NUMBER,
    Equipment,
    check_source,
    copy_patient_study,
    device_observer,
    mark_derived,
    new_uid,
)
from aspects.errors import EXIT_PROCESSING, InputError

DOCUMENT_TITLE = codes.DCM.OfInterest


def _description(result: Mapping) -> str:
    score = result.get("score")
    side = result.get("affected_side")
    what = f"ASPECTS {score}" + (f" ({side})" if side else "") if score is not None else "ASPECTS not assessable"
    return (
        f"{what}: source slices and key images at the basal ganglia and supraganglionic levels, "
        f"ASPECTS SR and SEG. {DISCLAIMER}"
    )


def build_kos(
    key_slices: Sequence[Dataset],
    key_images: Sequence[Dataset],
    sr: Dataset,
    seg: Optional[Dataset] = None,
    result: Optional[Mapping] = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """The KOS referencing ``key_slices`` (source CT), ``key_images`` (SC), ``sr`` and ``seg``.

    Datasets may be read without pixel data; every one must be of the same study.
    """
    check_source(key_slices)
    # One reference per instance (both levels fall on one slice in a very short series).
    unique = {str(ds.SOPInstanceUID): ds for ds in [*key_slices, *key_images, sr, *([seg] if seg is not None else [])]}
    referenced = list(unique.values())
    studies = {str(ds.StudyInstanceUID) for ds in referenced}
    if len(studies) != 1:
        raise InputError(EXIT_PROCESSING, f"key objects come from {len(studies)} studies, expected one")
    result = result or {}
    equipment = Equipment.from_result(result)
    content = hd.ko.KeyObjectSelection(
        document_title=DOCUMENT_TITLE,
        referenced_objects=referenced,
        observer_device_context=device_observer(equipment),
        description=_description(result),
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=referenced,
        content=content,
        series_instance_uid=new_uid(),
        series_number=SERIES_NUMBER["kos"],
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer=equipment.manufacturer,
    )
    copy_patient_study(key_slices[0], kos)
    mark_derived(kos, equipment, "KOS", image=False)
    return kos


def write_kos(
    key_slices: Sequence[Dataset],
    key_images: Sequence[Dataset],
    sr: Dataset,
    path: Path,
    seg: Optional[Dataset] = None,
    result: Optional[Mapping] = None,
) -> Path:
    """Build and save the KOS to ``path`` (parent folders created)."""
    kos = build_kos(key_slices, key_images, sr, seg, result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kos.save_as(path)
    return path
