"""The whole app on real heads made noisier or atrophied: does a normal head keep its ASPECTS?

    python -m aspects_research.tools.perturbed_heads --work DIR [--nifti FILE ...] [--dicom DIR ...]
        [--noise-sd 5 10 20] [--widen-csf 1] [--models models] [--json OUT.json]

Each head as given and with each change of :func:`aspects_research.tools.qc_calibration.perturbed`
(Gaussian noise on its voxels; its CSF spaces widened by voxels, an atrophied brain): a NIfTI
head (HU) is changed as a volume and written as a DICOM series
(:func:`aspects_research.tools.robustness.nifti_as_dicom`); a DICOM series is changed slice by
slice in its own files, its geometry (gantry tilt, spacing) kept. The app's stages run on every
version in this process (models loaded once; the same answers as ``python app.py``) and one JSON
line per run gives ASPECTS, acute infarct volume, the regions called, flags and the QC NCC.
Defaults: the two real heads of ../shared/data/real. Results: docs/results.md (session 32).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from aspects_research.tools import one_line_errors
from aspects_research.tools.make_datalist import write_json

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "real"
DEFAULT_NIFTI = [REAL / "invesalius_head_ct" / "cranium_ct.nii.gz"]  # GPL-2: read, never copied into the repo
DEFAULT_DICOM = [REAL / "ge_tilted_head_dicom" / "dicom"]


def changes(noise_sd: List[float], widen_csf: List[int]) -> List[Tuple[str, Dict[str, float]]]:
    """``(label, perturbed() keywords)``: the head as given first, then each change."""
    return ([("as given", {})] + [(f"noise {sd:g} HU", {"noise_sd": sd}) for sd in noise_sd]
            + [(f"CSF widened {k} voxel{'s' if k > 1 else ''}", {"widen_csf": k}) for k in widen_csf])


def nifti_version(nifti: Path, change: Dict[str, float], folder: Path) -> Path:
    """The NIfTI head with ``change`` as a DICOM series in ``folder``/input."""
    import SimpleITK as sitk

    from aspects_research.tools.qc_calibration import perturbed
    from aspects_research.tools.robustness import nifti_as_dicom

    folder.mkdir(parents=True, exist_ok=True)
    head = sitk.ReadImage(str(nifti), sitk.sitkFloat32)
    changed = folder / "head.nii.gz"
    sitk.WriteImage(sitk.Cast(sitk.Round(perturbed(head, **change) if change else head), sitk.sitkInt16), str(changed))
    return nifti_as_dicom(changed, folder / "input", f"{nifti.name} {json.dumps(change)}")


def dicom_version(series: Path, change: Dict[str, float], folder: Path) -> Path:
    """The DICOM series copied to ``folder``/input with ``change`` applied to each slice's HU (noise
    drawn per slice, seeded by its position in the files sorted by name); the input is not changed."""
    import numpy as np
    import SimpleITK as sitk

    from aspects_research.tools.qc_calibration import perturbed
    from aspects_research.tools.robustness import edit

    def apply(ds, n: int) -> None:
        slope, icpt = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        stored = ds.pixel_array
        hu = sitk.GetImageFromArray(stored.astype(np.float32) * slope + icpt)
        hu = sitk.GetArrayFromImage(perturbed(hu, seed=n, **change))
        info = np.iinfo(stored.dtype)
        ds.PixelData = np.clip(np.round((hu - icpt) / slope), info.min, info.max).astype(stored.dtype).tobytes()

    inp = folder / "input"
    if inp.exists():
        shutil.rmtree(inp)
    inp.mkdir(parents=True)
    copies = [Path(shutil.copy2(f, inp / f.name)) for f in sorted(p for p in series.iterdir() if p.is_file())]
    if change:
        edit(copies, apply)
    return inp


def run_versions(heads: List[Tuple[str, Callable[[Dict[str, float], Path], Path]]], versions, work: Path,
                 models: Path) -> List[dict]:
    from aspects.pipeline import Pipeline

    pipeline = Pipeline(models_dir=models, keep_models_loaded=True)
    rows = []
    for head, make in heads:
        for n, (label, change) in enumerate(versions):
            folder = work / f"{head}-{n}"
            out = folder / "out"
            if out.exists():
                shutil.rmtree(out)
            d = pipeline.run(make(change, folder), out)
            row = {"head": head, "change": label, "aspects": d["aspects"], "infarct_ml": d["infarct_volume_ml"],
                   "regions": {s: [c for c, r in d["regions"][s].items() if r["involved"]] for s in ("left", "right")},
                   "flags": d["flags"], "qc_ncc": (d.get("qc") or {}).get("ncc")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the changed series and the app's results")
    ap.add_argument("--nifti", type=Path, nargs="*", help="heads as NIfTI in HU (default: the InVesalius head)")
    ap.add_argument("--dicom", type=Path, nargs="*", help="heads as DICOM series folders (default: the GE head)")
    ap.add_argument("--noise-sd", type=float, nargs="*", default=[5.0, 10.0, 20.0], help="noise added (HU)")
    ap.add_argument("--widen-csf", type=int, nargs="*", default=[1], help="CSF spaces widened by (voxels)")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)

    def run() -> int:
        from aspects.errors import EXIT_USAGE, InputError

        nifti = DEFAULT_NIFTI if args.nifti is None else args.nifti
        dicom = DEFAULT_DICOM if args.dicom is None else args.dicom
        missing = [str(p) for p in (*nifti, *dicom) if not p.exists()]
        if missing:
            raise InputError(EXIT_USAGE, f"not found: {', '.join(missing)}")
        heads = ([(p.name.split(".")[0], lambda c, f, p=p: nifti_version(p, c, f)) for p in nifti]
                 + [(p.parent.name if p.name == "dicom" else p.name, lambda c, f, p=p: dicom_version(p, c, f)) for p in dicom])
        rows = run_versions(heads, changes(args.noise_sd, args.widen_csf), args.work, args.models)
        if args.json:
            write_json(rows, args.json)
        return 0

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
