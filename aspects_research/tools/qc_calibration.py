#!/usr/bin/env python
"""Registration QC figures against the atlas template: the NCC that ``aspects.preprocess`` reports
for correct registrations (phantoms, real heads) and for deliberately wrong ones.

    aspects-qc-calibration --phantoms DIR [--real-nifti FILE ...] [--real-dicom DIR ...]
                           [--noise-sd SD ...] [--widen-csf K ...] [--known-errors]

For each study it prints the preprocessing QC (NCC, brain volume, scale) and, for the template
itself moved by known errors (shifts of 6 / 10 mm, rotations of 10 / 20 degrees), the NCC the same
QC gives: the thresholds ``NCC_LOW`` / ``NCC_FAIL`` must separate the two groups. ``--noise-sd`` and
``--widen-csf`` add, for every real head, the same head with that much Gaussian noise (HU) or with
its CSF spaces (ventricles, sulci) widened by that many voxels into the tissue beside them (an
atrophied brain, as in the elderly stroke population): a correct registration of a noisier or
older head than the template should not read as a poor one. ``--known-errors`` adds, for every
study, the NCC its own head would read registered 6-14 mm or 8-15 degrees off (:data:`KNOWN_ERRORS`):
which errors the threshold catches on heads like it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

import numpy as np
import SimpleITK as sitk


from aspects.atlas import load_atlas  # noqa: E402
from aspects.errors import InputError  # noqa: E402
from aspects.preprocess import (QC_ERODE_VOXELS, QC_SMOOTH_VOX, REG_WINDOW, aligned_template, preprocess,  # noqa: E402
                                qc_similarity, template_on_aligned)
from aspects.registration import ncc  # noqa: E402
from aspects.series import read_study  # noqa: E402
from aspects.skullstrip import fill_holes  # noqa: E402


def read_dicom_dir(folder: Path) -> sitk.Image:
    """The HU volume of the study in ``folder`` as the app loads it (:func:`aspects.series.read_study`)."""
    return read_study(folder).volume.image


CSF_HU = (-5.0, 14.0)
TISSUE_HU = (18.0, 50.0)
SKULL_MARGIN_VOXELS = 8  # CSF is widened only this far inside the head's outline: not into the scalp


def perturbed(image: sitk.Image, noise_sd: float = 0.0, widen_csf: int = 0, seed: int = 0) -> sitk.Image:
    """``image`` (HU) with Gaussian noise of ``noise_sd`` HU, or with its CSF-density voxels inside
    the head grown by ``widen_csf`` voxels into the brain tissue beside them (set to CSF, 8 +- 3 HU).
    A new image; ``image`` is not changed."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    if widen_csf > 0:
        inside = ndi.binary_erosion(hu > -100.0, iterations=SKULL_MARGIN_VOXELS)
        csf = (hu >= CSF_HU[0]) & (hu <= CSF_HU[1]) & inside
        grown = ndi.binary_dilation(csf, iterations=widen_csf) & (hu >= TISSUE_HU[0]) & (hu <= TISSUE_HU[1]) & inside
        hu[grown] = 8.0 + rng.normal(0.0, 3.0, int(grown.sum()))
    if noise_sd > 0:
        hu += rng.normal(0.0, noise_sd, hu.shape).astype(np.float32)
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    return out


# Head pose changes: turning ("yaw", about the head-foot axis), nodding ("pitch", about the
# left-right axis) and tilting towards a shoulder ("roll", about the front-back axis); the physical
# axes (z, x, y) of an axial series, whose first two directions are the patient's x and y.
POSE_AXES = {"yaw": 2, "pitch": 0, "roll": 1}
HEAD_HU = -300.0  # voxels above this are the head (tissue, bone) for its centre of mass


def rotated(image: sitk.Image, axis: str, degrees: float, air_hu: float = -1024.0) -> sitk.Image:
    """``image`` (HU) with the head turned by ``degrees`` about ``axis`` (:data:`POSE_AXES`) through
    its centre of mass, on the same grid (linear interpolation, ``air_hu`` where the turned head
    leaves the grid): a patient lying differently in the same scanner. A new image."""
    if axis not in POSE_AXES:
        raise ValueError(f"axis {axis!r} is not one of {', '.join(POSE_AXES)}")
    hu = sitk.GetArrayViewFromImage(image)
    zyx = np.argwhere(hu > HEAD_HU).mean(axis=0) if (hu > HEAD_HU).any() else (np.asarray(hu.shape) - 1) / 2.0
    angles = [0.0, 0.0, 0.0]
    angles[POSE_AXES[axis]] = float(np.deg2rad(degrees))
    tx = sitk.Euler3DTransform()
    tx.SetCenter(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))
    tx.SetRotation(*angles)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), image, tx, sitk.sitkLinear, air_hu, sitk.sitkFloat32)


def moved_template_ncc(atlas) -> List[dict]:
    """The QC's NCC between the aligned template and itself shifted / rotated (known failures)."""
    from scipy import ndimage as ndi

    fixed = template_on_aligned(atlas.template)
    arr = sitk.GetArrayFromImage(fixed)
    mask = fill_holes(arr > 0.5)
    interior = ndi.binary_erosion(mask, iterations=QC_ERODE_VOXELS)
    b = ndi.gaussian_filter(np.clip(arr, *REG_WINDOW), QC_SMOOTH_VOX)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in fixed.GetSize()])
    rows = []
    for what, tx in (("shift 6 mm", sitk.TranslationTransform(3, (6.0, 0, 0))),
                     ("shift 10 mm", sitk.TranslationTransform(3, (10.0, 0, 0))),
                     ("rotation 10 deg", sitk.Euler3DTransform(centre, 0.0, 0.0, np.radians(10))),
                     ("rotation 20 deg", sitk.Euler3DTransform(centre, 0.0, 0.0, np.radians(20)))):
        moved = sitk.GetArrayFromImage(sitk.Resample(fixed, fixed, tx, sitk.sitkLinear, 0.0))
        a = ndi.gaussian_filter(np.clip(moved, *REG_WINDOW), QC_SMOOTH_VOX)
        rows.append({"study": f"template, {what}", "ncc": round(ncc(a, b, interior), 3)})
    return rows


# Known registration errors put on a correctly registered head, on the aligned grid (z, y, x):
# shifts along each axis and turns about each axis through the grid's centre, as (name, kind,
# array axis, amounts in mm or degrees).
KNOWN_ERRORS = (("head-foot", "shift", 0, (6.0, 10.0, 14.0)), ("front-back", "shift", 1, (6.0, 10.0, 14.0)),
                ("left-right", "shift", 2, (6.0, 10.0, 14.0)), ("turn (yaw)", "rotation", 0, (8.0, 15.0)),
                ("tilt (roll)", "rotation", 1, (8.0, 15.0)), ("nod (pitch)", "rotation", 2, (8.0, 15.0)))
_ROTATION_PLANES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}  # array axes turned into each other about axis k


def moved(aligned: np.ndarray, kind: str, axis: int, amount: float, spacing_mm: float = 2.0) -> np.ndarray:
    """``aligned`` (z, y, x) shifted by ``amount`` mm along array ``axis`` or turned by ``amount``
    degrees about it through the grid centre (linear, 0 outside): the head as a registration that
    far off would put it. A new array."""
    from scipy import ndimage as ndi

    if kind == "shift":
        shift = [0.0, 0.0, 0.0]
        shift[axis] = amount / spacing_mm
        return ndi.shift(aligned, shift, order=1, mode="constant", cval=0.0)
    if kind == "rotation":
        return ndi.rotate(aligned, amount, axes=_ROTATION_PLANES[axis], reshape=False, order=1, mode="constant", cval=0.0)
    raise ValueError(f"kind {kind!r} is not 'shift' or 'rotation'")


def known_error_ncc(aligned: np.ndarray, atlas) -> List[dict]:
    """The QC's NCC (:func:`aspects.preprocess.qc_similarity`, whole grid scanned) of a correctly
    registered head as given and with each of :data:`KNOWN_ERRORS`: what a registration that far
    off would read, against ``NCC_LOW``."""
    tmpl = aligned_template(atlas)
    inside = np.ones(aligned.shape, bool)
    rows = [{"error": "none", "ncc": round(qc_similarity(aligned, tmpl, inside), 3)}]
    for name, kind, axis, amounts in KNOWN_ERRORS:
        unit = "mm" if kind == "shift" else "deg"
        for amount in amounts:
            rows.append({"error": f"{name} {kind} {amount:g} {unit}",
                         "ncc": round(qc_similarity(moved(aligned, kind, axis, amount), tmpl, inside), 3)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phantoms", type=Path, help="folder of phantom cases (each with dicom/)")
    ap.add_argument("--real-nifti", type=Path, nargs="*", default=[], help="real head CT volumes (HU NIfTI)")
    ap.add_argument("--real-dicom", type=Path, nargs="*", default=[], help="real head CT DICOM series folders")
    ap.add_argument("--atlas", type=Path, help="atlas folder (default: the repository's)")
    ap.add_argument("--noise-sd", type=float, nargs="*", default=[], help="each real head again with this noise (HU)")
    ap.add_argument("--widen-csf", type=int, nargs="*", default=[],
                    help="each real head again with its CSF spaces widened by this many voxels")
    ap.add_argument("--known-errors", action="store_true",
                    help="for each study also the NCC its head would read registered with each of KNOWN_ERRORS")
    args = ap.parse_args(argv)
    atlas = load_atlas(args.atlas)
    studies = []
    if args.phantoms:
        studies += [(c.name, lambda c=c: read_dicom_dir(c / "dicom")) for c in sorted(args.phantoms.iterdir())
                    if (c / "dicom").is_dir()]
    real = [(p.name, lambda p=p: sitk.ReadImage(str(p), sitk.sitkFloat32)) for p in args.real_nifti]
    real += [(p.name, lambda p=p: read_dicom_dir(p)) for p in args.real_dicom]
    studies += real
    for name, load in real:
        studies += [(f"{name}, noise {sd:g} HU", lambda load=load, sd=sd: perturbed(load(), noise_sd=sd)) for sd in args.noise_sd]
        studies += [(f"{name}, CSF widened {k} voxels", lambda load=load, k=k: perturbed(load(), widen_csf=k))
                    for k in args.widen_csf]
    for name, load in studies:
        try:
            pre = preprocess(load(), atlas)
            row = {"study": name, **{k: pre.qc[k] for k in ("ncc", "brain_volume_ml", "affine_scale", "low_confidence")}}
            if args.known_errors:
                row["known_errors"] = {r["error"]: r["ncc"] for r in known_error_ncc(sitk.GetArrayFromImage(pre.aligned), atlas)}
        except InputError as exc:
            row = {"study": name, "error": exc.one_line()}
        print(json.dumps(row), flush=True)
    for row in moved_template_ncc(atlas):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
