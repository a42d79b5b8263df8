#!/usr/bin/env python
"""Registration QC figures against the atlas template: the NCC that ``aspects.preprocess`` reports
for correct registrations (phantoms, real heads) and for deliberately wrong ones.

    aspects-qc-calibration --phantoms DIR [--real-nifti FILE ...] [--real-dicom DIR ...]
                           [--noise-sd SD ...] [--widen-csf K ...]

For each study it prints the preprocessing QC (NCC, brain volume, scale) and, for the template
itself moved by known errors (shifts of 6 / 10 mm, rotations of 10 / 20 degrees), the NCC the same
QC gives: the thresholds ``NCC_LOW`` / ``NCC_FAIL`` must separate the two groups. ``--noise-sd`` and
``--widen-csf`` add, for every real head, the same head with that much Gaussian noise (HU) or with
its CSF spaces (ventricles, sulci) widened by that many voxels into the tissue beside them (an
atrophied brain, as in the elderly stroke population): a correct registration of a noisier or
older head than the template should not read as a poor one.
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
from aspects.preprocess import (QC_ERODE_VOXELS, QC_SMOOTH_VOX, REG_WINDOW, preprocess,  # noqa: E402
                                template_on_aligned)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phantoms", type=Path, help="folder of phantom cases (each with dicom/)")
    ap.add_argument("--real-nifti", type=Path, nargs="*", default=[], help="real head CT volumes (HU NIfTI)")
    ap.add_argument("--real-dicom", type=Path, nargs="*", default=[], help="real head CT DICOM series folders")
    ap.add_argument("--atlas", type=Path, help="atlas folder (default: the repository's)")
    ap.add_argument("--noise-sd", type=float, nargs="*", default=[], help="each real head again with this noise (HU)")
    ap.add_argument("--widen-csf", type=int, nargs="*", default=[],
                    help="each real head again with its CSF spaces widened by this many voxels")
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
        except InputError as exc:
            row = {"study": name, "error": exc.one_line()}
        print(json.dumps(row), flush=True)
    for row in moved_template_ncc(atlas):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
