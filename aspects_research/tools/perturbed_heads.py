"""The whole app on real heads made noisier or atrophied: does a normal head keep its ASPECTS?

    python -m aspects_research.tools.perturbed_heads --work DIR [--nifti FILE ...] [--dicom DIR ...]
        [--noise-sd 5 10 20] [--widen-csf 1] [--rotate-deg 20 30] [--axes yaw pitch roll]
        [--models models] [--json OUT.json]

Each head as given and with each change of :func:`aspects_research.tools.qc_calibration.perturbed`
(Gaussian noise on its voxels; its CSF spaces widened by voxels, an atrophied brain) and of
:func:`~aspects_research.tools.qc_calibration.rotated` (the head turned about one axis through its
centre of mass, both ways: a patient lying differently in the scanner): a NIfTI head (HU) is
changed as a volume and written as a DICOM series
(:func:`aspects_research.tools.robustness.nifti_as_dicom`); a DICOM series is changed slice by
slice in its own files, its geometry (gantry tilt, spacing) kept, except for a turn, which needs the
volume: the series as the app loads it (tilt resampled away) is turned and written as a new axial
series. The app's stages run on every version in this process (models loaded once; the same answers
as ``python app.py``) and one JSON line per run gives ASPECTS (and the truth's, for a phantom with
its truth.json beside the series), acute infarct volume, the regions called, flags, the QC NCC and
the QC's reasons. Defaults: the two real heads of ../shared/data/real, no turns. Results:
docs/results.md (sessions 32 and 36).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from aspects_research.tools import one_line_errors
from aspects_research.tools.make_datalist import write_json

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "real"
DEFAULT_NIFTI = [REAL / "invesalius_head_ct" / "cranium_ct.nii.gz"]  # GPL-2: read, never copied into the repo
DEFAULT_DICOM = [REAL / "ge_tilted_head_dicom" / "dicom"]


Change = Dict[str, Any]  # perturbed() keywords, or {"rotate": [axis, degrees]} for rotated()


def changes(noise_sd: List[float], widen_csf: List[int], rotate_deg: Sequence[float] = (),
            axes: Sequence[str] = ()) -> List[Tuple[str, Change]]:
    """``(label, change)``: the head as given first, then each change; every turn both ways."""
    return ([("as given", {})] + [(f"noise {sd:g} HU", {"noise_sd": sd}) for sd in noise_sd]
            + [(f"CSF widened {k} voxel{'s' if k > 1 else ''}", {"widen_csf": k}) for k in widen_csf]
            + [(f"{axis} {sign * deg:+g} deg", {"rotate": [axis, sign * deg]})
               for axis in axes for deg in rotate_deg for sign in (1, -1)])


def changed(head: Any, change: Change) -> Any:
    """The HU volume ``head`` (a SimpleITK image) with ``change``; a new image."""
    from aspects_research.tools.qc_calibration import perturbed, rotated

    if "rotate" in change:
        axis, degrees = change["rotate"]
        return rotated(head, str(axis), float(degrees))
    return perturbed(head, **change) if change else head


def volume_as_dicom(head: Any, change: Change, folder: Path, description: str) -> Path:
    """The volume ``head`` with ``change`` as an axial DICOM series in ``folder``/input."""
    import SimpleITK as sitk

    from aspects_research.tools.robustness import nifti_as_dicom

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "head.nii.gz"
    sitk.WriteImage(sitk.Cast(sitk.Round(changed(head, change)), sitk.sitkInt16), str(out))
    inp = folder / "input"
    if inp.exists():
        shutil.rmtree(inp)
    return nifti_as_dicom(out, inp, f"{description} {json.dumps(change)}")


def nifti_version(nifti: Path, change: Change, folder: Path) -> Path:
    """The NIfTI head with ``change`` as a DICOM series in ``folder``/input."""
    import SimpleITK as sitk

    return volume_as_dicom(sitk.ReadImage(str(nifti), sitk.sitkFloat32), change, folder, nifti.name)


def dicom_version(series: Path, change: Change, folder: Path) -> Path:
    """The DICOM series copied to ``folder``/input with ``change`` applied to each slice's HU (noise
    drawn per slice, seeded by its position in the files sorted by name); a turn is applied to the
    series' volume as the app loads it, written as a new series. The input is not changed."""
    import numpy as np
    import SimpleITK as sitk

    from aspects_research.tools.qc_calibration import perturbed, read_dicom_dir
    from aspects_research.tools.robustness import edit

    if "rotate" in change:
        return volume_as_dicom(read_dicom_dir(series), change, folder, series.name)

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


def run_versions(heads: List[Tuple[str, Callable[[Change, Path], Path]]], versions, work: Path,
                 models: Path, truths: Optional[Dict[str, Any]] = None) -> List[dict]:
    """``truths``: a head's true ASPECTS (a phantom's truth.json), copied into its rows."""
    from aspects.pipeline import Pipeline

    truths = truths or {}
    pipeline = Pipeline(models_dir=models, keep_models_loaded=True)
    rows = []
    for head, make in heads:
        for n, (label, change) in enumerate(versions):
            folder = work / f"{head}-{n}"
            out = folder / "out"
            if out.exists():
                shutil.rmtree(out)
            d = pipeline.run(make(change, folder), out)
            qc = d.get("qc") or {}
            row = {"head": head, "change": label, "aspects": d["aspects"], "infarct_ml": d["infarct_volume_ml"],
                   "regions": {s: [c for c, r in d["regions"][s].items() if r["involved"]] for s in ("left", "right")},
                   "flags": d["flags"], "qc_ncc": qc.get("ncc"), "qc_reasons": qc.get("reasons") or []}
            if head in truths:
                row["truth_aspects"] = truths[head]
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
    ap.add_argument("--rotate-deg", type=float, nargs="*", default=[], help="head turns (degrees, each both ways)")
    ap.add_argument("--axes", nargs="*", default=["yaw", "pitch", "roll"], choices=["yaw", "pitch", "roll"],
                    help="axes of the turns")
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
        def name(p: Path) -> str:
            return p.parent.name if p.name == "dicom" else p.name

        heads = ([(p.name.split(".")[0], lambda c, f, p=p: nifti_version(p, c, f)) for p in nifti]
                 + [(name(p), lambda c, f, p=p: dicom_version(p, c, f)) for p in dicom])
        truths = {name(p): json.loads((p.parent / "truth.json").read_text())["aspects"]
                  for p in dicom if (p.parent / "truth.json").is_file()}
        versions = changes(args.noise_sd, args.widen_csf, args.rotate_deg, args.axes)
        rows = run_versions(heads, versions, args.work, args.models, truths)
        if args.json:
            write_json(rows, args.json)
        return 0

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
