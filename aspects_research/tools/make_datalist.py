"""Write the MONAI datalists the training bundles in train/ read.

    # synthetic studies (aspects-make-phantoms): run the app's preprocessing on each case and
    # write aligned images + aligned truth, then regions.json and infarct.json
    aspects-make-datalist --phantoms DIR [--val-phantoms DIR2] --out OUT

    # your own aligned NIfTI pairs (same file names in both folders)
    aspects-make-datalist --images DIR --labels DIR --out OUT/datalist.json

    # your own head CTs (NIfTI in HU, any orientation, or DICOM study folders) with infarct masks
    # (NIfTI, same case names) in the same patient space: aligned as the app aligns a study
    aspects-make-datalist --images DIR --labels DIR --align --out OUT [--contra] [--workers 2]

Datalists are ``{"training": [{"image": ..., "label": ...}], "validation": [...]}`` with paths
relative to the datalist's folder (the bundles resolve them against it). The split is fixed: the
``--val-phantoms`` folder when given, else every case whose sorted position falls on the
``--val-every``-th slot, so rerunning gives the same split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


from aspects.errors import EXIT_BAD_SERIES, EXIT_USAGE, InputError  # noqa: E402
from aspects_research.tools import one_line_errors  # noqa: E402

NIFTI_SUFFIXES = (".nii.gz", ".nii")
Entry = Dict[str, str]


def _stem(path: Path) -> str:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def nifti_files(folder: Path) -> Dict[str, Path]:
    """``{stem: path}`` of the NIfTI files directly in ``folder``."""
    return {_stem(p): p for p in sorted(folder.iterdir()) if p.is_file() and p.name.endswith(NIFTI_SUFFIXES)}


def pair_folder(images: Path, labels: Path, studies: bool = False) -> List[Tuple[str, Path, Path]]:
    """``(case, image, label)`` for every image with a label of the same name; others are errors.
    Images are the NIfTI files in ``images`` (case = the name without its suffix) and, with
    ``studies``, its sub-folders too (DICOM studies; case = the folder's name)."""
    for folder in (images, labels):
        if not folder.is_dir():
            raise InputError(EXIT_USAGE, f"not a folder: {folder}")
    imgs = nifti_files(images)
    if studies:
        imgs.update({p.name: p for p in sorted(images.iterdir()) if p.is_dir()})
    if not imgs:
        what = "NIfTI images (.nii / .nii.gz)" + (" or DICOM study folders" if studies else "")
        raise InputError(EXIT_USAGE, f"no {what} in {images}")
    labs = nifti_files(labels)
    missing = sorted(set(imgs) - set(labs))
    if missing:
        raise InputError(EXIT_USAGE, f"{len(missing)} images have no label in {labels}: {', '.join(missing[:5])}")
    return [(case, imgs[case], labs[case]) for case in sorted(imgs)]


def split_cases(cases: Sequence[str], val_every: int) -> Tuple[List[str], List[str]]:
    """Fixed split of sorted case names: every ``val_every``-th case (1-based) goes to validation."""
    if val_every < 2:
        raise InputError(EXIT_USAGE, f"--val-every must be >= 2, not {val_every}")
    ordered = sorted(cases)
    val = [c for i, c in enumerate(ordered) if (i + 1) % val_every == 0]
    return [c for c in ordered if c not in val], val


def datalist(train: Sequence[Entry], val: Sequence[Entry]) -> dict:
    if not train:
        raise InputError(EXIT_USAGE, "no training cases")
    return {"training": list(train), "validation": list(val)}


def write_json(data: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path.resolve(), base.resolve())


def folder_datalist(images: Path, labels: Path, out_file: Path, val_every: int) -> dict:
    """Datalist of existing image/label pairs, paths relative to ``out_file``'s folder."""
    pairs = pair_folder(images, labels)
    train, val = split_cases([c for c, _, _ in pairs], val_every)
    base = out_file.parent
    entry = {c: {"image": _rel(img, base), "label": _rel(lab, base)} for c, img, lab in pairs}
    return datalist([entry[c] for c in train], [entry[c] for c in val])


# --- synthetic studies -------------------------------------------------------------------------

TASKS = ("regions", "infarct")


def phantom_cases(folder: Path) -> List[Path]:
    """Case folders (``dicom/`` and ``truth/`` inside) of a make_phantoms output folder."""
    if not folder.is_dir():
        raise InputError(EXIT_USAGE, f"not a folder: {folder}")
    cases = [p for p in sorted(folder.iterdir()) if (p / "dicom").is_dir() and (p / "truth").is_dir()]
    if not cases:
        raise InputError(EXIT_USAGE, f"no synthetic studies (<case>/dicom + <case>/truth) in {folder}")
    return cases


def load_study(dicom_dir: Path):
    """The study's selected series as the app loads it (:func:`aspects.series.read_study`)."""
    from aspects.series import read_study

    return read_study(dicom_dir)


def align_case(case: Path, out: Path, atlas, contra: bool = False) -> Dict[str, str]:
    """Preprocess one synthetic study as the app does; write aligned image and truth; return paths.

    ``contra``: also the contralateral counterpart as the app's asymmetry stage makes it (the
    mirror deformed onto the image, :func:`aspects.asymmetry.contralateral`), HU on the aligned
    grid, for a model that takes it as its second channel instead of the plain mirror."""
    import SimpleITK as sitk

    from aspects.pipeline import preprocess_series

    pre = preprocess_series(load_study(case / "dicom"), atlas)
    truth = {task: sitk.ReadImage(str(case / "truth" / f"{task}.nii.gz"), sitk.sitkUInt8) for task in TASKS}
    files = _case_files(case, out, contra)
    write_aligned(pre, truth, files)
    return {k: _rel(v, out) for k, v in files.items()}


def write_aligned(pre, labels, files: Dict[str, Path]) -> None:
    """Write the preprocessed study ``pre`` (:class:`aspects.preprocess.Preprocessed`) to
    ``files``: ``"image"`` the aligned HU, each of ``labels`` (task -> uint8 image in the study's
    physical space) under its task's name, and, where ``files`` has ``"contra"``, the mirror
    deformed onto the image as the app's asymmetry stage makes it."""
    import SimpleITK as sitk

    from aspects.preprocess import to_aligned

    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(pre.aligned, str(files["image"]), True)
    if "contra" in files:
        from aspects.asymmetry import contralateral

        hu = sitk.GetArrayFromImage(pre.aligned)
        warped, _ = contralateral(hu, sitk.GetArrayFromImage(pre.brain_mask) > 0, pre.aligned)
        img = sitk.GetImageFromArray(warped.astype("float32"))
        img.CopyInformation(pre.aligned)
        sitk.WriteImage(img, str(files["contra"]), True)
    for task, label in labels.items():
        aligned = to_aligned(pre, label, label=True)  # label-wise interpolation: no new values
        sitk.WriteImage(aligned, str(files[task]), True)


def _case_files(case: Path, out: Path, contra: bool = False) -> Dict[str, Path]:
    """Where :func:`align_case` writes the aligned image, each task's aligned truth and (``contra``)
    the deformed mirror."""
    files = {"image": out / "images" / f"{case.name}.nii.gz"}
    files.update({task: out / task / f"{case.name}.nii.gz" for task in TASKS})
    if contra:
        files["contra"] = out / "contra" / f"{case.name}.nii.gz"
    return files


def _aligned_files(case: Path, out: Path, contra: bool = False) -> Optional[Dict[str, str]]:
    """The outputs of an earlier :func:`align_case` of ``case`` when all of them exist (resume)."""
    files = _case_files(case, out, contra)
    if all(f.is_file() for f in files.values()):
        return {k: _rel(v, out) for k, v in files.items()}
    return None


def _slice_mm(case: Path) -> Dict[str, float]:
    """``{"slice_mm": t}``, the study's slice thickness from its ``params.json`` (what the
    infarct bundle's lesion synthesis blurs a painted lesion by), or nothing when unknown."""
    try:
        return {"slice_mm": float(json.loads((case / "params.json").read_text())["thickness"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


_WORKER_ATLAS = None


def _init_worker(atlas_dir: Optional[Path]) -> None:
    global _WORKER_ATLAS
    os.environ.setdefault("ASPECTS_ANTS_THREADS", "1")
    from aspects.atlas import load_atlas

    _WORKER_ATLAS = load_atlas(atlas_dir)


def _in_worker(align, kwargs: dict):
    return align(atlas=_WORKER_ATLAS, **kwargs)


def _align_jobs(jobs: Sequence[Tuple[str, dict]], align, atlas, workers: int = 1, atlas_dir: Optional[Path] = None):
    """``(name, result, error)`` per job as it finishes: ``align(atlas=atlas, **kwargs)``'s value,
    or None and the exception it raised; in this process, or in ``workers`` processes (one ANTs
    thread each, their own atlas), which is how 2 cores are best used."""
    if workers <= 1:
        for name, kwargs in jobs:
            try:
                yield name, align(atlas=atlas, **kwargs), None
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who decides
                yield name, None, exc
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(workers, mp.get_context("spawn"), _init_worker, (atlas_dir,))
    try:
        futures = {pool.submit(_in_worker, align, kwargs): name for name, kwargs in jobs}
        for f in cf.as_completed(futures):
            exc = f.exception()
            yield futures[f], (None if exc else f.result()), exc
    finally:  # joined here: left to interpreter exit, its wake-up pipe may be closed first
        pool.shutdown(cancel_futures=True)


def phantom_datalists(train_dir: Path, val_dir: Optional[Path], out: Path, val_every: int, atlas,
                      workers: int = 1, atlas_dir: Optional[Path] = None, contra: bool = False) -> Dict[str, dict]:
    """Align every case and write ``out/regions.json`` and ``out/infarct.json`` (same split).

    Cases aligned by an earlier (interrupted) run are reused; ``workers`` > 1 aligns cases in
    that many processes (one ANTs thread each), which is how 2 cores are best used. ``contra``:
    the infarct datalist's entries carry the deformed mirror too (``"contra"``, see :func:`align_case`)."""
    train_cases = phantom_cases(train_dir)
    if val_dir is not None:
        val_cases = phantom_cases(val_dir)
    else:
        tr, va = split_cases([c.name for c in train_cases], val_every)
        val_cases = [c for c in train_cases if c.name in va]
        train_cases = [c for c in train_cases if c.name in tr]
    done: Dict[str, Dict[str, str]] = {}
    everything = train_cases + val_cases
    start = time.monotonic()
    todo = []
    for case in everything:
        earlier = _aligned_files(case, out, contra)
        if earlier is None:
            if case not in todo:  # a folder given as both training and validation
                todo.append(case)
        else:
            done[case.name] = earlier
    if len(done):
        print(f"{len(done)} cases already aligned in {out}: reused", flush=True)
    jobs = [(case.name, dict(case=case, out=out, contra=contra)) for case in todo]
    for n, (name, files, exc) in enumerate(_align_jobs(jobs, align_case, atlas, workers, atlas_dir), 1):
        if exc is not None:
            raise exc  # a synthetic study that cannot be aligned is a bug of the generator or the app
        done[name] = files
        print(f"[{n}/{len(todo)}] {name} aligned ({time.monotonic() - start:.0f} s)", flush=True)
    lists = {}
    for task in TASKS:
        pick = lambda cases, task=task: [dict(image=done[c.name]["image"], label=done[c.name][task], **_slice_mm(c),
                                              **({"contra": done[c.name]["contra"]} if contra and task == "infarct" else {}))
                                         for c in cases]
        lists[task] = datalist(pick(train_cases), pick(val_cases))
        write_json(lists[task], out / f"{task}.json")
    return lists


# --- your own head CTs --------------------------------------------------------------------------

# A head CT in HU has air around the head; an image whose darkest 1 % is above this is not one
# (raw stored values without their rescale, or a skull-stripped image the app cannot strip again).
AIR_HU = -500.0
FIELD_TOLERANCE_VOXELS = 1.0  # headers written by different tools round the geometry differently


def lesion_outside(image, label) -> Optional[str]:
    """Where the mask's lesion (its non-zero voxels' box, in patient space) leaves ``image``'s
    field, or None: a mask of another study or in another space. Any grid in the image's space is
    fine: the mask goes to the aligned grid through patient coordinates."""
    import itertools

    import numpy as np
    import SimpleITK as sitk

    nz = np.argwhere(sitk.GetArrayViewFromImage(label) != 0)
    if nz.size == 0:
        return None
    size = np.asarray(image.GetSize(), dtype=float)
    tol = FIELD_TOLERANCE_VOXELS + 0.5
    for corner in itertools.product(*zip(nz.min(0)[::-1], nz.max(0)[::-1])):  # (x, y, z) indices
        point = label.TransformIndexToPhysicalPoint([int(v) for v in corner])
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex(point))
        if np.any(index < -tol) or np.any(index > size - 1 + tol):
            return f"its lesion reaches ({', '.join(f'{v:.1f}' for v in point)}) mm, outside the image"
    return None


def slice_spacing(image) -> float:
    """The spacing along the image axis nearest the patient's head-foot axis: the slice step of
    an axial head CT (what the infarct bundle's lesion synthesis blurs a painted lesion by)."""
    import numpy as np

    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return float(image.GetSpacing()[int(np.argmax(np.abs(d[2])))])


def align_ct(case: str, image_path: Path, label_path: Path, atlas, out: Path, contra: bool = False) -> Dict[str, object]:
    """One head CT and its infarct mask aligned as the app aligns a study; the datalist entry
    (paths relative to ``out``), also kept in ``out/entries/<case>.json`` for a rerun.

    ``image_path``: a NIfTI in HU (any orientation; its axes permuted, without resampling, to a
    DICOM axial series' order) or a DICOM study folder (the app's series selection and reading).
    ``label_path``: non-zero = infarct, on any grid in the image's patient space (label-wise
    interpolation onto the aligned grid). Raises :class:`InputError` for what the app could not use."""
    import numpy as np
    import SimpleITK as sitk

    from aspects.preprocess import preprocess, preprocess_series

    if image_path.is_dir():
        series = load_study(image_path)
        image = series.volume.image
        prepare = lambda: preprocess_series(series, atlas)  # noqa: E731 - the scanned field from its slices
    else:
        image = sitk.DICOMOrient(_volume(sitk.ReadImage(str(image_path), sitk.sitkFloat32), image_path), "LPS")
        prepare = lambda: preprocess(image, atlas)  # noqa: E731
    darkest = float(np.percentile(sitk.GetArrayViewFromImage(image), 1))
    if darkest > AIR_HU:
        raise InputError(EXIT_BAD_SERIES, f"{image_path.name}: its darkest 1 % of voxels is {darkest:.0f}, not air "
                                          f"(< {AIR_HU:.0f}): a head CT in Hounsfield units, not skull-stripped, is needed")
    label = sitk.Cast(_volume(sitk.ReadImage(str(label_path)), label_path) != 0, sitk.sitkUInt8)
    problem = lesion_outside(image, label)
    if problem:
        raise InputError(EXIT_USAGE, f"{label_path.name} does not fit {image_path.name}: {problem}")
    files = _ct_files(case, out, contra)
    write_aligned(prepare(), {"infarct": label}, files)
    entry: Dict[str, object] = {"image": _rel(files["image"], out), "label": _rel(files["infarct"], out)}
    if contra:
        entry["contra"] = _rel(files["contra"], out)
    entry["slice_mm"] = round(slice_spacing(image), 4)
    write_json(entry, _entry_file(case, out))  # last: its presence means the case is complete
    return entry


def _volume(img, path: Path):
    """``img``, which must be 3-D (ITK reads a NIfTI of shape (x, y, z, 1) as 3-D already)."""
    if img.GetDimension() != 3:
        raise InputError(EXIT_BAD_SERIES, f"{path.name} is {img.GetDimension()}-D of size {img.GetSize()}; "
                                          "a 3-D head CT and mask are needed")
    return img


def _ct_files(case: str, out: Path, contra: bool) -> Dict[str, Path]:
    files = {"image": out / "images" / f"{case}.nii.gz", "infarct": out / "infarct" / f"{case}.nii.gz"}
    if contra:
        files["contra"] = out / "contra" / f"{case}.nii.gz"
    return files


def _entry_file(case: str, out: Path) -> Path:
    return out / "entries" / f"{case}.json"


def ct_datalist(images: Path, labels: Path, out: Path, val_every: int, atlas, workers: int = 1,
                atlas_dir: Optional[Path] = None, contra: bool = False) -> Tuple[dict, Dict[str, str]]:
    """Align every image/mask pair (:func:`align_ct`) into ``out`` and write ``out/infarct.json``
    (the fixed ``val_every`` split over all pairs, so a case skipped now keeps the others' split).
    A pair that cannot be used is skipped with its one-line reason, listed in ``out/skipped.json``
    and returned; pairs aligned by an earlier run (with the same ``contra``) are reused."""
    pairs = pair_folder(images, labels, studies=True)
    train, val = split_cases([c for c, _, _ in pairs], val_every)
    done: Dict[str, Dict[str, object]] = {}
    jobs = []
    for case, img, lab in pairs:
        entry_file = _entry_file(case, out)
        earlier = json.loads(entry_file.read_text()) if entry_file.is_file() else None
        if earlier is not None and ("contra" in earlier) == contra:
            done[case] = earlier
        else:
            jobs.append((case, dict(case=case, image_path=img, label_path=lab, out=out, contra=contra)))
    if done:
        print(f"{len(done)} cases already aligned in {out}: reused", flush=True)
    skipped: Dict[str, str] = {}
    start = time.monotonic()
    for n, (case, entry, exc) in enumerate(_align_jobs(jobs, align_ct, atlas, workers, atlas_dir), 1):
        if isinstance(exc, InputError):
            skipped[case] = exc.one_line()
            print(f"[{n}/{len(jobs)}] {case} skipped: {skipped[case]}", file=sys.stderr, flush=True)
            continue
        if exc is not None:
            raise exc
        done[case] = entry
        print(f"[{n}/{len(jobs)}] {case} aligned ({time.monotonic() - start:.0f} s)", flush=True)
    write_json(skipped, out / "skipped.json")
    if not done:
        raise InputError(EXIT_USAGE, f"none of the {len(pairs)} image/mask pairs could be aligned ({out / 'skipped.json'})")
    data = datalist([done[c] for c in train if c in done], [done[c] for c in val if c in done])
    write_json(data, out / "infarct.json")
    return data, skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", type=Path, help="make_phantoms output folder (training cases)")
    ap.add_argument("--val-phantoms", type=Path, help="make_phantoms folder used only for validation")
    ap.add_argument("--images", type=Path, help="folder of image NIfTI files (aligned; with --align: head CTs in HU)")
    ap.add_argument("--labels", type=Path, help="folder of label NIfTI files with the images' names")
    ap.add_argument("--align", action="store_true",
                    help="images: head CTs (NIfTI in HU or DICOM study folders), aligned as the app aligns a study, "
                         "with their infarct masks (non-zero = infarct) in the same patient space; --out is a folder")
    ap.add_argument("--out", type=Path, required=True,
                    help="phantoms and --align: output folder; images: datalist file")
    ap.add_argument("--val-every", type=int, default=5, help="without a validation folder: every N-th case validates (5)")
    ap.add_argument("--atlas", type=Path, help="atlas folder (default: $ASPECTS_ATLAS_DIR or <repo>/atlas)")
    ap.add_argument("--workers", type=int, default=1, help="phantoms and --align: cases aligned in parallel processes (1)")
    ap.add_argument("--contra", action="store_true",
                    help="phantoms and --align: also write the deformed mirror (contra/) and list it in infarct.json (~3 s a case)")
    args = ap.parse_args(argv)

    def run() -> int:
        if (args.phantoms is None) == (args.images is None):
            raise InputError(EXIT_USAGE, "give either --phantoms DIR or --images DIR --labels DIR")
        if args.images is not None:
            if args.labels is None:
                raise InputError(EXIT_USAGE, "--images needs --labels")
            if args.align:
                from aspects.atlas import load_atlas

                data, skipped = ct_datalist(args.images, args.labels, args.out, args.val_every, load_atlas(args.atlas),
                                            workers=args.workers, atlas_dir=args.atlas, contra=args.contra)
                print(f"{args.out / 'infarct.json'}: {len(data['training'])} training, {len(data['validation'])} "
                      f"validation, {len(skipped)} skipped")
                return 0
            data = folder_datalist(args.images, args.labels, args.out, args.val_every)
            write_json(data, args.out)
            print(f"{args.out}: {len(data['training'])} training, {len(data['validation'])} validation")
            return 0
        if args.align:
            raise InputError(EXIT_USAGE, "--align goes with --images DIR --labels DIR")
        from aspects.atlas import load_atlas

        lists = phantom_datalists(args.phantoms, args.val_phantoms, args.out, args.val_every, load_atlas(args.atlas),
                                  workers=args.workers, atlas_dir=args.atlas, contra=args.contra)
        for task, data in lists.items():
            print(f"{args.out / (task + '.json')}: {len(data['training'])} training, {len(data['validation'])} validation")
        return 0

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
