"""Write the MONAI datalists the training bundles in train/ read.

    # synthetic studies (aspects-make-phantoms): run the app's preprocessing on each case and
    # write aligned images + aligned truth, then regions.json and infarct.json
    aspects-make-datalist --phantoms DIR [--val-phantoms DIR2] --out OUT

    # your own aligned NIfTI pairs (same file names in both folders)
    aspects-make-datalist --images DIR --labels DIR --out OUT/datalist.json

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


from aspects.errors import EXIT_INTERNAL, EXIT_USAGE, InputError  # noqa: E402

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


def pair_folder(images: Path, labels: Path) -> List[Tuple[str, Path, Path]]:
    """``(case, image, label)`` for every image with a label of the same name; others are errors."""
    for folder in (images, labels):
        if not folder.is_dir():
            raise InputError(EXIT_USAGE, f"not a folder: {folder}")
    imgs, labs = nifti_files(images), nifti_files(labels)
    if not imgs:
        raise InputError(EXIT_USAGE, f"no NIfTI images (.nii / .nii.gz) in {images}")
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


def write_json(data: dict, path: Path) -> None:
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
    from aspects.preprocess import to_aligned

    pre = preprocess_series(load_study(case / "dicom"), atlas)
    files = _case_files(case, out, contra)
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(pre.aligned, str(files["image"]), True)
    if contra:
        from aspects.asymmetry import contralateral

        hu = sitk.GetArrayFromImage(pre.aligned)
        warped, _ = contralateral(hu, sitk.GetArrayFromImage(pre.brain_mask) > 0, pre.aligned)
        img = sitk.GetImageFromArray(warped.astype("float32"))
        img.CopyInformation(pre.aligned)
        sitk.WriteImage(img, str(files["contra"]), True)
    for task in TASKS:
        truth = sitk.ReadImage(str(case / "truth" / f"{task}.nii.gz"), sitk.sitkUInt8)
        aligned = to_aligned(pre, truth, label=True)  # label-wise interpolation: no new values
        sitk.WriteImage(aligned, str(files[task]), True)
    return {k: _rel(v, out) for k, v in files.items()}


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


def _align_in_worker(case: Path, out: Path, contra: bool = False) -> Dict[str, str]:
    return align_case(case, out, _WORKER_ATLAS, contra)


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
    pool = None
    if workers <= 1:
        results = ((case, align_case(case, out, atlas, contra)) for case in todo)
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        pool = cf.ProcessPoolExecutor(workers, mp.get_context("spawn"), _init_worker, (atlas_dir,))
        futures = {pool.submit(_align_in_worker, case, out, contra): case for case in todo}
        results = ((futures[f], f.result()) for f in cf.as_completed(futures))
    for n, (case, files) in enumerate(results, 1):
        done[case.name] = files
        print(f"[{n}/{len(todo)}] {case.name} aligned ({time.monotonic() - start:.0f} s)", flush=True)
    if pool is not None:  # joined here: left to interpreter exit, its wake-up pipe may be closed first
        pool.shutdown()
    lists = {}
    for task in TASKS:
        pick = lambda cases, task=task: [dict(image=done[c.name]["image"], label=done[c.name][task], **_slice_mm(c),
                                              **({"contra": done[c.name]["contra"]} if contra and task == "infarct" else {}))
                                         for c in cases]
        lists[task] = datalist(pick(train_cases), pick(val_cases))
        write_json(lists[task], out / f"{task}.json")
    return lists


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", type=Path, help="make_phantoms output folder (training cases)")
    ap.add_argument("--val-phantoms", type=Path, help="make_phantoms folder used only for validation")
    ap.add_argument("--images", type=Path, help="folder of aligned image NIfTI files")
    ap.add_argument("--labels", type=Path, help="folder of label NIfTI files with the images' names")
    ap.add_argument("--out", type=Path, required=True, help="phantoms: output folder; images: datalist file")
    ap.add_argument("--val-every", type=int, default=5, help="without a validation folder: every N-th case validates (5)")
    ap.add_argument("--atlas", type=Path, help="atlas folder (default: $ASPECTS_ATLAS_DIR or <repo>/atlas)")
    ap.add_argument("--workers", type=int, default=1, help="phantoms: cases aligned in parallel processes (1)")
    ap.add_argument("--contra", action="store_true",
                    help="phantoms: also write the deformed mirror (contra/) and list it in infarct.json (~3 s a case)")
    args = ap.parse_args(argv)
    try:
        if (args.phantoms is None) == (args.images is None):
            raise InputError(EXIT_USAGE, "give either --phantoms DIR or --images DIR --labels DIR")
        if args.images is not None:
            if args.labels is None:
                raise InputError(EXIT_USAGE, "--images needs --labels")
            data = folder_datalist(args.images, args.labels, args.out, args.val_every)
            write_json(data, args.out)
            print(f"{args.out}: {len(data['training'])} training, {len(data['validation'])} validation")
            return 0
        from aspects.atlas import load_atlas

        lists = phantom_datalists(args.phantoms, args.val_phantoms, args.out, args.val_every, load_atlas(args.atlas),
                                  workers=args.workers, atlas_dir=args.atlas, contra=args.contra)
        for task, data in lists.items():
            print(f"{args.out / (task + '.json')}: {len(data['training'])} training, {len(data['validation'])} validation")
        return 0
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        print(f"error[{EXIT_INTERNAL}]: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
