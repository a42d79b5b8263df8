"""Read our SR and SEG back with dcmqi (QIICR; the readers 3D Slicer's QuantitativeReporting uses).

`tid1500reader` turns a TID 1500 SR into JSON; `segimage2itkimage` writes one image per SEG
segment. These helpers run them and put what they saw in aspects.json terms, so the tests can
check that a third-party reader sees what the app means.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from aspects.dicom_seg import REGION_TYPE
from aspects.labels import REGION_CODES

TID1500READER, SEGIMAGE2ITKIMAGE = shutil.which("tid1500reader"), shutil.which("segimage2itkimage")
needs_dcmqi = pytest.mark.skipif(
    TID1500READER is None or SEGIMAGE2ITKIMAGE is None, reason="dcmqi missing (pip install -r requirements.txt)"
)
SIDES_BY_MEANING = {"Right": "right", "Left": "left"}
REGION_BY_CODE = {REGION_TYPE[c][0].value: c for c in REGION_CODES}
INFARCT = "55641003"  # SCT Infarct
ASPECTS = "1290002002"  # SCT Alberta Stroke Program Early CT score
VOLUME = "118565006"  # SCT Volume


def _run(args: list, what: str) -> None:
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{what} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"


def read_sr(path: Path, work: Path) -> dict:
    """tid1500reader's JSON of the SR at ``path``."""
    out = Path(work) / "tid1500.json"
    _run([TID1500READER, "--inputDICOM", str(path), "--outputMetadata", str(out)], "tid1500reader")
    return json.loads(out.read_text())


def _items(group: dict, concept: str) -> list:
    return [m for m in group.get("measurementItems", []) if m["quantity"]["CodeValue"] == concept]


def sr_values(meta: dict) -> dict:
    """What dcmqi's JSON says: overall and per-side ASPECTS (None: coded not assessable), the
    infarct volume, per region
    ``infarct_ml`` (the Infarct finding at the region), ``region_ml`` and the referenced segment
    (the region's own group), and the involvement code meaning."""
    out: dict = {"score": None, "aspects": {}, "infarct_volume_ml": None, "regions": {}}
    for g in meta["Measurements"]:
        side = SIDES_BY_MEANING.get((g.get("Laterality") or {}).get("CodeMeaning"))
        site = (g.get("FindingSite") or {}).get("CodeValue")
        infarct = (g.get("Finding") or {}).get("CodeValue") == INFARCT
        aspects = _items(g, ASPECTS)
        coded = [q for q in g.get("qualitativeEvaluations", []) if q["conceptCode"]["CodeValue"] == ASPECTS]
        volumes = [float(m["value"]) for m in _items(g, VOLUME)]
        if aspects or coded:  # a number, or coded "Not assessable" (None)
            value = int(round(float(aspects[0]["value"]))) if aspects else None
            if side:
                out["aspects"][side] = value
            else:
                out["score"] = value
        elif site in REGION_BY_CODE and side:
            entry = out["regions"].setdefault((side, REGION_BY_CODE[site]), {})
            if infarct:
                entry["infarct_ml"] = volumes[0]
            else:
                entry.update(region_ml=volumes[0] if volumes else None, segment=g.get("ReferencedSegment"))
                entry["involvement"] = [q["conceptValue"]["CodeMeaning"] for q in g.get("qualitativeEvaluations", [])]
        elif infarct:
            out["infarct_volume_ml"] = volumes[0]
    return out


def read_seg(path: Path, work: Path) -> Tuple[dict, Dict[int, sitk.Image]]:
    """segimage2itkimage's metadata and ``{segment number: label image}`` of the SEG at ``path``."""
    folder = Path(work) / "seg_dcmqi"
    folder.mkdir(parents=True, exist_ok=True)
    _run([SEGIMAGE2ITKIMAGE, "--inputDICOM", str(path), "--outputDirectory", str(folder), "--prefix", "s",
          "--outputType", "nifti"], "segimage2itkimage")
    meta = json.loads((folder / "s-meta.json").read_text())
    images = {}
    for k, attrs in enumerate(meta["segmentAttributes"], start=1):
        for a in attrs:  # one segment per file (segments not merged)
            images[int(a["labelID"])] = sitk.ReadImage(str(folder / f"s-{k}.nii.gz"))
    return meta, images


def mask_on(image: sitk.Image, label: int, reference: sitk.Image) -> np.ndarray:
    """(z, y, x) bool mask of ``label`` in ``image``, resampled (nearest, by physical position)
    onto the grid of ``reference``: dcmqi crops to the slices that hold frames."""
    on_ref = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(on_ref) == label


def region_colours(meta: dict) -> Dict[str, Optional[list]]:
    """Segment label -> recommended display RGB, as dcmqi reports it."""
    return {a["SegmentLabel"]: a.get("recommendedDisplayRGBValue") for attrs in meta["segmentAttributes"] for a in attrs}


def sr_texts(ds) -> Iterator[str]:
    """Every TEXT item's value of an SR's content tree, depth first (pydicom only)."""
    for item in ds.get("ContentSequence", []):
        if "TextValue" in item:
            yield str(item.TextValue)
        yield from sr_texts(item)
