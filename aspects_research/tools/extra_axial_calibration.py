"""Calibration of the extra-axial blood finding (aspects.extra_axial) on studies at hand.

    aspects-extra-axial-calibration STUDY|ROOT ... [--jsonl OUT] [--subdural BUILD_DIR]

Each study (a case folder with ``dicom/``, a DICOM folder, a NIfTI file, or a root of case
folders) goes through the app's own preprocessing; on its unstripped head on the aligned grid the
finding is run with no least size, and the largest component that passes every other test is
printed (ml): against :data:`aspects.extra_axial.MIN_EXTRA_AXIAL_ML` on studies without such blood
(the margin), and as the detection on studies with one. ``--subdural BUILD_DIR`` first builds,
from each study given, copies with an acute collection of 4, 6 and 10 mm (65 HU) and a chronic one of
8 mm (18 HU), sides alternating (aspects_research.tools.robustness.add_subdural), and measures
those. docs/results_v2.md, "Blood between the brain and the skull".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

VARIANTS = (("acute4", 4.0, 65.0), ("acute6", 6.0, 65.0), ("acute10", 10.0, 65.0), ("chronic8", 8.0, 18.0))


def studies(paths: Sequence[Path]) -> Iterator[Path]:
    """The studies under ``paths``: case folders (``dicom/``), DICOM folders, NIfTI files, or
    roots of case folders."""
    for p in paths:
        if p.is_file() or (p / "dicom").is_dir() or any(p.glob("*.dcm")):
            yield p
        else:
            yield from (d for d in sorted(p.iterdir()) if (d / "dicom").is_dir())


def largest_component_ml(study: Path) -> Dict[str, object]:
    """The study's largest extra-axial component (ml) at no least size, with its side."""
    from aspects import preprocess as P
    from aspects.atlas import load_atlas
    from aspects.series import read_study

    if study.is_file():
        img, geom = sitk.ReadImage(str(study), sitk.sitkFloat32), None
    else:
        s = read_study(study / "dicom" if (study / "dicom").is_dir() else study)
        img, geom = s.volume.image, s.volume.geometry
    # the app's preprocessing, its finding kept at every size
    pre = P.preprocess(img, load_atlas(), geom, extra_axial_min_ml=0.0)
    found = sitk.GetArrayFromImage(pre.extra_axial) > 0
    spacing = pre.aligned.GetSpacing()
    labels, n = ndi.label(found, structure=np.ones((3, 3, 3), bool))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if n == 0:
        return {"largest_ml": 0.0, "found_side": None}
    sizes = np.bincount(labels.ravel())[1:]
    biggest = labels == 1 + int(np.argmax(sizes))
    x = np.nonzero(biggest)[2].mean()
    return {"largest_ml": round(float(sizes.max()) * voxel_ml, 2), "found_side": "left" if x >= found.shape[2] / 2 else "right"}


def build_subdural(study: Path, out: Path, index: int) -> List[Path]:
    """Copies of ``study`` (a DICOM series) with the :data:`VARIANTS` collections, under ``out``."""
    from aspects_research.tools.robustness import add_subdural

    src = study / "dicom" if (study / "dicom").is_dir() else study
    made = []
    for k, (name, thickness, hu) in enumerate(VARIANTS):
        side = "left" if (index + k) % 2 == 0 else "right"
        case = out / f"{study.name}_{name}_{side[0].upper()}"
        if not (case / "truth.json").is_file():
            shutil.rmtree(case, ignore_errors=True)
            shutil.copytree(src, case / "dicom", copy_function=shutil.copyfile)
            add_subdural(case / "dicom", side, thickness, hu, seed=index * 10 + k)
            (case / "truth.json").write_text(json.dumps({"kind": "subdural", "side": side, "thickness_mm": thickness,
                                                         "blood_hu": hu, "source": str(study)}))
        made.append(case)
    return made


def main(argv: Optional[Sequence[str]] = None) -> int:
    from aspects.extra_axial import MIN_EXTRA_AXIAL_ML

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--jsonl", type=Path, help="append one line per study here")
    ap.add_argument("--subdural", type=Path, metavar="BUILD_DIR",
                    help="measure copies of each study with simulated subdural collections built here")
    args = ap.parse_args(argv)
    cases = list(studies(args.paths))
    if args.subdural is not None:
        cases = [c for i, study in enumerate(cases) for c in build_subdural(study, args.subdural, i)]
    print(f"least size of the finding: {MIN_EXTRA_AXIAL_ML} ml")
    for case in cases:
        row: Dict[str, object] = {"study": str(case), **largest_component_ml(case)}
        truth = case / "truth.json"
        if truth.is_file():
            t = json.loads(truth.read_text())
            row.update({k: t.get(k) for k in ("kind", "anatomy", "thickness_mm", "side", "slice_thickness_mm")})
        row["found"] = float(row["largest_ml"]) >= MIN_EXTRA_AXIAL_ML  # type: ignore[arg-type]
        print(json.dumps(row), flush=True)
        if args.jsonl is not None:
            with args.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
