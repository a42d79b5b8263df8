"""What every derived DICOM object of this app shares: identity, equipment, provenance wording.

SEG, SR, KOS and secondary captures are new series in the source study: new Series/SOP Instance
UIDs, the source's StudyInstanceUID and patient/study attributes, this app as the equipment,
and a "not for diagnostic use" note until the models are validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from aspects import APP_NAME
from aspects import __version__ as APP_VERSION
from aspects.errors import EXIT_PROCESSING, InputError

MANUFACTURER = "ASPECTS NCCT open-source project"
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
DISCLAIMER = (
    "NOT FOR DIAGNOSTIC USE. Research software: the infarct and region segmentations and the "
    "ASPECTS computed from them are not validated for clinical decisions."
)

# Series numbers of the derived series (high, so they sort after the scanner's series).
SERIES_NUMBER = {"seg": 9001, "sr": 9002, "key": 9003, "kos": 9004}

# Private coding scheme for concepts without a standard code (the lentiform nucleus, the ASPECTS
# cortical regions M1..M6, "early ischaemic change in region", "not assessable" ...; the full
# table is docs/dicom.md). Declared in the objects' CodingSchemeIdentificationSequence so
# receivers can resolve it.
ASPECTS_SCHEME = "99ASPECTS"
ASPECTS_SCHEME_NAME = "ASPECTS NCCT application private codes"


def aspects_code(value: str, meaning: str) -> Code:
    return Code(value, ASPECTS_SCHEME, meaning)


def coding_scheme_identification() -> Dataset:
    """One CodingSchemeIdentificationSequence item declaring :data:`ASPECTS_SCHEME`."""
    item = Dataset()
    item.CodingSchemeDesignator = ASPECTS_SCHEME
    item.CodingSchemeName = ASPECTS_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


@dataclass(frozen=True)
class Equipment:
    """Manufacturer attributes written into every derived object."""

    name: str = APP_NAME
    version: str = APP_VERSION

    @property
    def manufacturer(self) -> str:
        return MANUFACTURER

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def software_versions(self) -> str:
        return self.version

    @classmethod
    def from_result(cls, result: Mapping) -> Equipment:
        """Use the app name/version recorded in aspects.json when present."""
        app = result.get("app") or {}
        return cls(str(app.get("name") or APP_NAME), str(app.get("version") or APP_VERSION))


def device_observer(equipment: Equipment) -> hd.sr.ObserverContext:
    """The app as the observing device of an SR / KOS (same device UID for one app version)."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[equipment.name, equipment.version]),
        name=equipment.name,
        manufacturer_name=equipment.manufacturer,
        model_name=equipment.model_name,
    )
    return hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device)


def new_uid() -> str:
    return generate_uid()


def series_description(kind: str) -> str:
    """e.g. ``ASPECTS SEG - NOT FOR DIAGNOSTIC USE`` (fits the 64-character LO limit)."""
    return f"ASPECTS {kind} - {NOT_FOR_DIAGNOSTIC_USE}"


# Patient/study attributes a derived object repeats from its source (Patient, General Study,
# Patient Study modules). highdicom copies the core ones; this fills the rest.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


# Maximum value lengths (PS3.5 Table 6.2-1) of the text VRs a derived object copies from its
# source; UIDs are never shortened (a cut UID would point elsewhere).
VR_MAX_LENGTH = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "LT": 10240,
                 "PN": 64, "SH": 16, "ST": 1024, "TM": 14}


def fit_to_vr(ds: Dataset) -> None:
    """Cut top-level text values copied from a source to their VR's maximum length (a 500-character
    StudyDescription from a scanner must not make the derived object invalid), and complete the
    de-identification pair: PatientIdentityRemoved YES requires a DeidentificationMethod."""
    for elem in ds:
        limit = VR_MAX_LENGTH.get(elem.VR)
        if limit is None or elem.value in (None, ""):
            continue
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        if any(len(str(v)) > limit for v in values):
            cut = [str(v)[:limit].rstrip() for v in values]
            elem.value = cut if elem.VM > 1 else cut[0]
    if str(ds.get("PatientIdentityRemoved", "")).upper() == "YES" and not ds.get("DeidentificationMethod"):
        ds.DeidentificationMethod = "not stated in the source images"


def copy_patient_study(source: Dataset, target: Dataset) -> None:
    """Copy the patient/study attributes present in ``source`` onto ``target`` (in place), within
    their VR limits (:func:`fit_to_vr`)."""
    for kw in PATIENT_STUDY_KEYWORDS:
        if kw in source and source[kw].value not in (None, ""):
            setattr(target, kw, source[kw].value)
    fit_to_vr(target)


def mark_derived(ds: Dataset, equipment: Equipment, kind: str, image: bool = True) -> None:
    """Equipment, series description and (for images) the disclaimer in Image Comments.

    The SR carries the disclaimer as a TEXT content item instead (no Image Comments in SR).
    """
    ds.Manufacturer = equipment.manufacturer
    ds.ManufacturerModelName = equipment.model_name
    ds.SoftwareVersions = equipment.software_versions
    ds.SeriesDescription = series_description(kind)
    if image:
        ds.ImageComments = DISCLAIMER


def check_source(source: Sequence[Dataset]) -> None:
    """The writers need a non-empty, single-series, image-bearing source list."""
    if not source:
        raise InputError(EXIT_PROCESSING, "no source images to derive outputs from")
    uids = {str(ds.SeriesInstanceUID) for ds in source}
    if len(uids) != 1:
        raise InputError(EXIT_PROCESSING, f"source images come from {len(uids)} series, expected one")


def flag_volume_text(detail: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The volume of one flag's ``flag_details`` entry in words ("0.5 ml"; a haemorrhage with a
    part between the brain and the skull: "36.0 ml, 30.0 ml of it extra-axial"), None without one."""
    detail = detail or {}
    ml = detail.get("volume_ml")
    if ml is None:
        return None
    text = f"{float(ml):.1f} ml"
    extra = detail.get("extra_axial_ml")
    return text if not extra else f"{text}, {float(extra):.1f} ml of it extra-axial"
