"""A fixed data split, archived: what each study is and a hash of its content, to check a rebuilt split.

    python -m aspects_research.tools.split_manifest --cases /work/data/v2/ph_test --write data/splits/v2_test.json
    python -m aspects_research.tools.split_manifest --cases /work/data/v2/ph_test --check data/splits/v2_test.json

The synthetic splits live outside the repository and are rebuilt from seeds
(``tools/make_v2_data.sh``). A generator change rebuilds different studies under the same seeds,
and figures measured on them are then not comparable with earlier ones (session 5: the 3-4 HU
sensitivity moved 0.67 -> 0.86 with the split, not with the app). The manifest records each
study's parameters and a SHA-256 of its content (the CT pixel values in instance order with the
slice geometry, and the truth masks), not of the files, so a header-only change (a pydicom
version) does not count as a different study. ``--check`` exits 1 and names every study that
is missing, new or different; 0 when the folder is the archived split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk

# The parameters that say what a study is (params.json); the rest follow from seed and generator.
DESCRIBE = ("seed", "generator", "split", "kind", "anatomy", "thickness", "lesion_id", "hu_drop", "n_slices")
TRUTH = ("aspects", "infarct_volume_ml", "affected_side")


def _update_array(h: Any, arr: np.ndarray) -> None:
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())


def content_hash(study: Path) -> Dict[str, str]:
    """SHA-256 of the CT (pixel values and slice geometry, instances by InstanceNumber) and of
    the truth masks (voxels and geometry) of one phantom study folder."""
    ct = hashlib.sha256()
    files = sorted((study / "dicom").glob("*.dcm"))
    if not files:
        raise FileNotFoundError(f"{study}: no DICOM files in dicom/")
    datasets = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    for ds in datasets:
        ct.update(repr((list(map(float, ds.ImagePositionPatient)), list(map(float, ds.ImageOrientationPatient)),
                        list(map(float, ds.PixelSpacing)), float(ds.RescaleSlope), float(ds.RescaleIntercept))).encode())
        _update_array(ct, ds.pixel_array)
    truth = hashlib.sha256()
    for mask in sorted((study / "truth").glob("*.nii*")):
        img = sitk.ReadImage(str(mask))
        truth.update(mask.name.encode() + repr((img.GetSpacing(), img.GetOrigin(), img.GetDirection())).encode())
        _update_array(truth, sitk.GetArrayViewFromImage(img))
    return {"ct_sha256": ct.hexdigest(), "truth_sha256": truth.hexdigest()}


def describe(study: Path) -> Dict[str, Any]:
    """One manifest entry: the study's name, parameters, truth summary and content hashes."""
    params = json.loads((study / "params.json").read_text())
    truth = json.loads((study / "truth.json").read_text())
    entry: Dict[str, Any] = {"study": study.name}
    entry.update({k: params.get(k) for k in DESCRIBE})
    entry.update({f"truth_{k}": truth.get(k) for k in TRUTH})
    entry.update(content_hash(study))
    return entry


def studies(cases: Path) -> List[Path]:
    return sorted(p for p in cases.iterdir() if (p / "params.json").is_file())


def compare(archived: Sequence[Dict[str, Any]], rebuilt: Sequence[Dict[str, Any]], present_only: bool = False) -> List[str]:
    """One line per difference between two manifests' entries (empty: the same split);
    ``present_only``: the rebuilt studies only (a spot check of a few)."""
    new = {e["study"]: e for e in rebuilt}
    old = {e["study"]: e for e in archived if not present_only or e["study"] in new}
    lines = [f"{s}: missing from the folder" for s in sorted(old.keys() - new.keys())]
    lines += [f"{s}: not in the archived split" for s in sorted(new.keys() - old.keys())]
    for s in sorted(old.keys() & new.keys()):
        changed = [k for k in old[s] if old[s][k] != new[s].get(k)]
        if changed:
            lines.append(f"{s}: differs in {', '.join(changed)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="folder of phantom studies (params.json, dicom/, truth/)")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="MANIFEST", help="write the manifest of --cases")
    mode.add_argument("--check", type=Path, metavar="MANIFEST", help="compare --cases with an archived manifest")
    ap.add_argument("--present-only", action="store_true",
                    help="--check: only the studies in --cases (a spot check of some rebuilt studies)")
    args = ap.parse_args(argv)
    if not args.cases.is_dir():
        print(f"error[2]: {args.cases}: not a folder", file=sys.stderr)
        return 2
    found = studies(args.cases)
    if not found:
        print(f"error[2]: {args.cases}: no phantom studies (params.json) in it", file=sys.stderr)
        return 2
    entries = []
    for i, study in enumerate(found, 1):
        entries.append(describe(study))
        print(f"[{i}/{len(found)}] {study.name}", file=sys.stderr, flush=True)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps({"cases": len(entries), "studies": entries}, indent=1) + "\n")
        print(f"{len(entries)} studies -> {args.write}")
        return 0
    if not args.check.is_file():
        print(f"error[2]: {args.check}: no such manifest", file=sys.stderr)
        return 2
    diffs = compare(json.loads(args.check.read_text())["studies"], entries, args.present_only)
    for line in diffs:
        print(line)
    print(f"{len(entries)} studies: " + ("the archived split" if not diffs else f"{len(diffs)} difference(s)"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
