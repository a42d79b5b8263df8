"""Cache what the region-level evidence sees, once per study, for fast method research.

    aspects-evidence-cache --cases CASEROOT [CASEROOT ...] --out /work/data/evidence/cache [--models models]

Runs the app's own stages (:class:`aspects.pipeline.Pipeline`: scan, select, preprocess, both
segmenters, scoring without a region-evidence calibration) on every phantom under each CASEROOT
(``<case>/dicom`` + ``truth.json``, aspects-make-phantoms) and writes ``OUT/<case>.npz`` with, on
the template-aligned grid (z, y, x): the HU image and brain mask, the deformed contralateral
counterpart (image and brain), the difference and comparable maps, the region labels, the tissue
blood / old infarct explain (:func:`aspects.region_evidence.explained_tissue`), the acute voxel
mask and the truth infarct; and a ``meta`` JSON string: truth.json, the voxel-mask involvement
per side and code as the app scores it (``involved_by`` "mask"; None = not assessable) and the
aligned spacing. A case already cached is skipped, so the job can be stopped and restarted.
Prints one line per study (case, seconds, mask-involved regions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from aspects import asymmetry
from aspects.assess import ScoringSettings, assess_study
from aspects.dicom_input import scan_folder
from aspects.errors import EXIT_USAGE, InputError
from aspects.flags import find
from aspects.labels import REGION_CODES, SIDES
from aspects.pipeline import Pipeline, preprocess_series
from aspects.preprocess import to_aligned
from aspects.region_evidence import explained_tissue
from aspects.series import choose_series, load_series


class _Counterpart:
    """Keeps the last result of :func:`aspects.asymmetry.contralateral` (the deformed mirror the
    difference map was made from), so a statistic at another smoothing can be computed from the
    cache without a second registration."""

    def __init__(self) -> None:
        self.original = asymmetry.contralateral
        self.last: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Tuple[np.ndarray, np.ndarray]:
        self.last = self.original(*args, **kwargs)
        return self.last


def mask_involvement(document: Dict[str, Any]) -> Dict[str, Dict[str, Optional[bool]]]:
    """Per side and code: involved by the voxel-mask rule (None where not assessable)."""
    out: Dict[str, Dict[str, Optional[bool]]] = {}
    for side in SIDES:
        out[side] = {}
        for code in REGION_CODES:
            r = document["regions"][side][code]
            out[side][code] = None if r.get("involved") is None else "mask" in (r.get("involved_by") or ())
    return out


def run_stages(pipeline: Pipeline, case: Path) -> Tuple[Dict[str, Any], Any, Any, Any, Any]:
    """truth.json and the app's stages on one phantom: (truth, series, preprocessed, infarct, regions)."""
    truth = json.loads((case / "truth.json").read_text())
    series = load_series(choose_series(scan_folder(case / "dicom"), pipeline.rules))
    pre = preprocess_series(series, pipeline.atlas())
    infarct, regions, _ = pipeline.segment(pre)
    return truth, series, pre, infarct, regions


def cache_case(pipeline: Pipeline, case: Path, out: Path, grab: _Counterpart) -> Dict[str, Any]:
    """Run one phantom through the app's stages and write ``out`` (npz)."""
    grab.last = None
    truth, series, pre, infarct, regions = run_stages(pipeline, case)
    if grab.last is None:
        raise RuntimeError("the infarct stage did not register the mirror")
    scored = assess_study(series, pre, infarct, regions, ScoringSettings(calibration=None))
    hu = sitk.GetArrayFromImage(pre.aligned).astype(np.float32)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    dense = sitk.GetArrayFromImage(pre.dense) > 0 if pre.dense is not None else None
    findings = find(hu, brain, pre.aligned.GetSpacing(), dense)
    truth_inf = sitk.ReadImage(str(case / "truth" / "infarct.nii.gz"))
    truth_al = sitk.GetArrayFromImage(to_aligned(pre, sitk.Cast(truth_inf, sitk.sitkUInt8), label=True)) > 0
    acute = sitk.GetArrayFromImage(infarct.mask) > 0
    meta = {"case": case.name, "truth": truth, "mask_involved": mask_involvement(scored.document),
            "spacing_mm": list(pre.aligned.GetSpacing()), "aspects_mask_only": scored.document.get("aspects")}
    np.savez_compressed(
        out, hu=hu.astype(np.float16), brain=brain, contra_hu=grab.last[0].astype(np.float16),
        contra_brain=grab.last[1].astype(bool), difference=infarct.asymmetry.difference.astype(np.float32),
        comparable=infarct.asymmetry.comparable, labels=sitk.GetArrayFromImage(regions.labels).astype(np.uint8),
        explained=explained_tissue(findings), infarct=acute, truth_infarct=truth_al, meta=np.array(json.dumps(meta)))
    return meta


def load_cached(path: Path) -> Dict[str, Any]:
    """One cached study: the arrays and ``meta`` as a dict."""
    with np.load(path) as z:
        d: Dict[str, Any] = {k: z[k] for k in z.files if k != "meta"}
        d["meta"] = json.loads(str(z["meta"]))
    return d


def phantom_cases(roots: Sequence[Path]) -> List[Path]:
    """The phantom cases (folders with a truth.json) under each root; InputError (usage) when a
    root is not a folder or none is found."""
    cases: List[Path] = []
    for root in roots:
        if not root.is_dir():
            raise InputError(EXIT_USAGE, f"--cases {root} is not a folder")
        cases += sorted(p for p in root.iterdir() if (p / "truth.json").is_file())
    if not cases:
        raise InputError(EXIT_USAGE, "no case with a truth.json under --cases")
    return cases


def pending_cases(cases: Sequence[Path], out_dir: Path) -> Iterator[Tuple[int, Path, Path]]:
    """(number, case, partial .npz path) of each case without ``out_dir/<case>.npz``; the partial
    file the caller wrote is moved into place when it asks for the next case (so the job can be
    stopped and restarted)."""
    for i, case in enumerate(cases, 1):
        out = out_dir / f"{case.name}.npz"
        if out.is_file():
            continue
        part = out.with_suffix(".part.npz")
        yield i, case, part
        part.replace(out)


def cache_parser(description: str, out_help: str) -> argparse.ArgumentParser:
    """The arguments every per-case cache tool takes: --cases, --out, --models."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", type=Path, nargs="+", required=True, help="phantom roots (<case>/dicom, truth.json)")
    ap.add_argument("--out", type=Path, required=True, help=out_help)
    ap.add_argument("--models", type=Path, default=Path("models"), help="models folder (default models)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = cache_parser(__doc__.split("\n\n")[0], "cache folder (<case>.npz)").parse_args(argv)
    try:
        cases = phantom_cases(args.cases)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(args.models, parallel=False)
    grab = _Counterpart()
    asymmetry.contralateral = grab
    try:
        for i, case, part in pending_cases(cases, args.out):
            t0 = time.perf_counter()
            meta = cache_case(pipeline, case, part, grab)
            inv = [f"{s} {c}" for s in SIDES for c in REGION_CODES if meta["mask_involved"][s][c]]
            print(f"[{i}/{len(cases)}] {case.name} {time.perf_counter() - t0:.1f} s; mask involves "
                  f"{', '.join(inv) or 'none'}; truth {meta['truth'].get('involved')}", flush=True)
    finally:
        asymmetry.contralateral = grab.original
    return 0


if __name__ == "__main__":
    sys.exit(main())
