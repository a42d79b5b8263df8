"""The output files of a scored study, one function per writer stage (the app's writer operators
and the in-process pipeline call these): DICOM SEG, SR, key images, KOS, NIfTI masks and
aspects.json, at their fixed places in the output folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import pydicom
import SimpleITK as sitk

from aspects.assess import ScoredStudy
from aspects.dicom_kos import write_kos
from aspects.dicom_seg import write_seg
from aspects.dicom_sr import write_sr
from aspects.key_images import key_slices, write_key_images
from aspects.labels import FINDINGS
from aspects.result_json import with_outputs, write_result
from aspects.run_folder import RESULT_JSON

log = logging.getLogger(__name__)

SEG_FILE = Path("dicom") / "seg.dcm"
SR_FILE = Path("dicom") / "sr.dcm"
KOS_FILE = Path("dicom") / "kos.dcm"
NIFTI_DIR = Path("nifti")


@dataclass(frozen=True)
class KeyImage:
    """One key image: its ASPECTS level (``"BG"`` | ``"SG"``) or the flagged finding it shows
    (``"haemorrhage_suspected"`` | ``"old_infarct_suspected"`` | ``"infarct_outside_mca"``), the
    source slice it shows and the files (secondary capture DICOM and PNG)."""

    level: str
    slice_index: int
    dcm: Path
    png: Path


@dataclass(frozen=True)
class WrittenOutputs:
    """The files a run wrote (absent ones None / empty)."""

    seg: Optional[Path] = None
    sr: Optional[Path] = None
    kos: Optional[Path] = None
    key_images: Tuple[KeyImage, ...] = ()
    nifti: Mapping[str, Path] = field(default_factory=dict)

    def as_outputs(self) -> Dict[str, Any]:
        """Arguments of :func:`aspects.result_json.relative_outputs`."""
        return {"seg": self.seg, "sr": self.sr, "kos": self.kos, "key_images": [k.dcm for k in self.key_images],
                "png": [k.png for k in self.key_images], "nifti": dict(self.nifti) or None}


def seg_output(scored: ScoredStudy, out_dir: Path) -> Path:
    """DICOM SEG (infarct + 20 regions + the located flagged findings) to ``OUT/dicom/seg.dcm``."""
    # the findings with a segment of their own (the outside-MCA infarct is in the infarct's)
    segmented = {name: mask for name, mask in scored.findings.items() if name in FINDINGS}
    path = write_seg(scored.source, scored.infarct, scored.regions, scored.document, Path(out_dir) / SEG_FILE, segmented)
    log.info("wrote %s", path)
    return path


def sr_output(scored: ScoredStudy, out_dir: Path, seg: Optional[Path] = None) -> Path:
    """DICOM SR (TID 1500) to ``OUT/dicom/sr.dcm``; its hemisphere groups reference the key slices
    (same rule as the key images) and, given ``seg``, the infarct/region/finding groups its segments."""
    seg_ds = pydicom.dcmread(seg, stop_before_pixels=True) if seg is not None else None
    keys = [scored.source[k] for k in key_slices(scored.document, scored.regions).values()]
    path = write_sr(scored.source, scored.document, Path(out_dir) / SR_FILE, key_sources=keys, seg=seg_ds)
    log.info("wrote %s", path)
    return path


def key_image_outputs(scored: ScoredStudy, out_dir: Path) -> Tuple[KeyImage, ...]:
    """BG/SG key images, and one per located flagged finding, to ``OUT/dicom/key_*.dcm`` and
    ``OUT/png/key_*.png``."""
    written = write_key_images(scored.source, scored.infarct, scored.regions, scored.document, Path(out_dir),
                               findings=scored.findings)
    keys = tuple(KeyImage(level, int(item["slice"]), Path(item["dcm"]), Path(item["png"]))
                 for level, item in written.items())
    for k in keys:
        log.info("key image %s: slice %d -> %s, %s", k.level, k.slice_index, k.dcm, k.png)
    return keys


def kos_output(scored: ScoredStudy, out_dir: Path, key_images: Tuple[KeyImage, ...], sr: Path, seg: Path) -> Path:
    """Key Object Selection document to ``OUT/dicom/kos.dcm``: flags the key images, their source
    slices, the SR and the SEG as the study's key objects."""
    path = write_kos(
        [scored.source[k.slice_index] for k in key_images],
        [pydicom.dcmread(k.dcm, stop_before_pixels=True) for k in key_images],
        pydicom.dcmread(sr, stop_before_pixels=True),
        Path(out_dir) / KOS_FILE,
        seg=pydicom.dcmread(seg, stop_before_pixels=True),
        result=scored.document,
    )
    log.info("wrote %s", path)
    return path


def nifti_outputs(scored: ScoredStudy, out_dir: Path) -> Dict[str, Path]:
    """``OUT/nifti/infarct.nii.gz``, ``regions.nii.gz`` and ``findings.nii.gz`` (1 suspected
    haemorrhage, 2 suspected old infarct; for evaluation and research use)."""
    folder = Path(out_dir) / NIFTI_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, image in scored.mask_images().items():
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]), useCompression=True)
    return paths


def result_json_output(scored: ScoredStudy, out_dir: Path, outputs: WrittenOutputs) -> Path:
    """aspects.json, written last: the scored document plus the relative paths of ``outputs``."""
    document = with_outputs(scored.document, Path(out_dir), outputs.as_outputs())
    path = write_result(document, Path(out_dir) / RESULT_JSON)
    log.info("wrote %s", path)
    return path
