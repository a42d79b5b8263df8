"""Tiny template-aligned studies for the bundle smoke tests (no registration, a few seconds).

Each study is a 2 mm, identity-direction grid, symmetric in x like the real aligned grid: an
ellipsoidal "brain" at 30-40 HU whose voxels carry region labels 1..20 (right = low x, as in
LPS), and a -10 HU infarct sphere in one hemisphere's lateral BG area.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import numpy as np
import SimpleITK as sitk

TINY_SIZE_XYZ = (32, 32, 32)


def _grid(arr_zyx: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr_zyx)
    img.SetSpacing((2.0, 2.0, 2.0))
    nx, ny, nz = TINY_SIZE_XYZ
    img.SetOrigin((-(nx - 1), -(ny - 1), -(nz - 1)))  # centred: mid-sagittal plane at x = 0
    return img


def tiny_study(seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hu, regions, infarct)`` ``(z, y, x)`` arrays of one tiny study."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = TINY_SIZE_XYZ
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    cx, cy, cz = (nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2
    brain = ((x - cx) / 13) ** 2 + ((y - cy) / 14) ** 2 + ((z - cz) / 12) ** 2 <= 1
    # 10 regions per side: 2 levels (z) x 5 sectors (y); left = high x (LPS +x is patient left).
    level = (z >= cz).astype(int)
    sector = np.clip(((y / ny) * 5).astype(int), 0, 4)
    code = level * 5 + sector + 1
    regions = np.where(brain, code + np.where(x > cx, 10, 0), 0).astype(np.uint8)
    hu = np.where(brain, 30.0 + 2.0 * (code % 3) + rng.normal(0, 2, brain.shape), 0.0)
    side = 1 if seed % 2 else -1
    infarct = (((x - (cx + side * 7)) ** 2 + (y - cy) ** 2 + (z - cz + 3) ** 2) <= 16) & brain
    hu = np.where(infarct, hu - 10.0, hu).astype(np.float32)
    return hu, regions, infarct.astype(np.uint8)


def write_tiny_dataset(out: Path, n_train: int = 2, n_val: int = 1) -> Path:
    """Write images, labels and ``regions.json`` / ``infarct.json`` datalists under ``out``; the
    infarct entries also carry a ``contra`` volume (the mirror shifted by one voxel: a stand-in for
    the deformed mirror of ``aspects-make-datalist --contra``)."""
    entries: dict = {"regions": [], "infarct": []}
    for i in range(n_train + n_val):
        hu, regions, infarct = tiny_study(i)
        contra = np.roll(np.flip(hu, axis=2), 1, axis=1)
        name = f"tiny_{i:02d}.nii.gz"
        for sub, arr in (("images", hu), ("regions", regions), ("infarct", infarct), ("contra", contra)):
            (out / sub).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(_grid(np.ascontiguousarray(arr)), str(out / sub / name))
        for task in entries:
            entries[task].append({"image": f"images/{name}", "label": f"{task}/{name}",
                                  **({"contra": f"contra/{name}"} if task == "infarct" else {})})
    for task, items in entries.items():
        data = {"training": items[:n_train], "validation": items[n_train:]}
        (out / f"{task}.json").write_text(json.dumps(data, indent=1))
    return out
