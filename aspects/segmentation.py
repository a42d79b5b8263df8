"""Region and infarct segmentation on the aligned grid: the TorchScript model when one is
installed, else the documented fallback (atlas LNCC warp, bilateral asymmetry).

Infarct consensus: a connected component of the infarct model's mask is kept only when the
bilateral-asymmetry baseline also marks part of it. The model delineates lesions better; the
baseline, which needs a hypodensity relative to the mirrored hemisphere, vetoes the model's
false positives in studies without an infarct (on the training and validation phantoms: every
false positive of the normal studies removed, acute Dice unchanged or better; figures in
train/infarct_seg/docs/README.md).

Models live at ``MODELS/<name>/<name>.ts`` (one file per folder, the MAP model-repository rule).
Both take the aligned volume in the layout of :mod:`aspects.model_io` and return logits on the
same grid; results are kept inside the brain mask.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.asymmetry import AsymmetryMaps, asymmetry_infarct, asymmetry_maps
from aspects.inference import (
    CPU,
    load_torchscript,
    predict_labels,
    release_device_memory,
    resolve_device,
    set_cpu_threads,
)
from aspects.model_io import from_model_layout, mirror, normalise, to_model_layout
from aspects.preprocess import ALIGNED_SPACING
from aspects.region_atlas import atlas_regions

log = logging.getLogger(__name__)

REGION_MODEL = "aspects_regions"
INFARCT_MODEL = "infarct_seg"
N_REGION_CLASSES = 21


def model_file(models_dir: Optional[Path], name: str) -> Optional[Path]:
    """``models_dir/name/name.ts`` when it exists, else None."""
    if models_dir is None:
        return None
    path = Path(models_dir) / name / f"{name}.ts"
    return path if path.is_file() else None


def _on_aligned(arr_zyx: np.ndarray, pre) -> sitk.Image:
    arr = np.asarray(arr_zyx, dtype=np.uint8).copy()
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(pre.aligned)
    return img


def segment_regions(pre, atlas, models_dir: Optional[Path], device: Optional[str] = None) -> Tuple[sitk.Image, str]:
    """(uint8 labels on the aligned grid, ``"model"`` | ``"atlas"``); ``device`` as in
    :func:`aspects.inference.resolve_device` (None: ``$ASPECTS_DEVICE`` or automatic)."""
    path = model_file(models_dir, REGION_MODEL)
    if path is None:
        log.info("regions: no %s model in %s; atlas LNCC registration", REGION_MODEL, models_dir)
        return atlas_regions(pre, atlas), "atlas"
    device = resolve_device(device)
    set_cpu_threads()
    model = load_torchscript(path, device)
    hu = sitk.GetArrayFromImage(pre.aligned)
    x = to_model_layout(normalise(hu))[None, None]
    labels, _ = predict_labels(model, x, device)
    del model
    release_device_memory(device)
    labels = from_model_layout(labels)
    if labels.max() >= N_REGION_CLASSES:
        raise ValueError(f"{path}: label {labels.max()} outside 0..{N_REGION_CLASSES - 1}")
    return _on_aligned(labels, pre), "model"


def consensus_components(model_mask: np.ndarray, support: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """Components (26-connected) of ``model_mask`` that touch ``support``: (mask, kept, dropped)."""
    lab, n = ndi.label(model_mask, structure=np.ones((3, 3, 3), bool))
    touched = np.unique(lab[support & (lab > 0)])
    return np.isin(lab, touched), int(touched.size), int(n - touched.size)


@dataclass
class InfarctSegmentation:
    """The infarct segmenter's result on the aligned grid.

    ``mask``: uint8 0/1 SimpleITK image; ``method``: ``"model"`` | ``"asymmetry"``; ``device``:
    where the model ran (``"cpu"`` | ``"cuda:N"``; the baseline is CPU code); ``info``: summary
    for the log (JSON-able); ``asymmetry``: the contralateral comparison, reused by the
    region-level evidence.
    """

    mask: sitk.Image
    method: str
    device: str
    info: Dict[str, object]
    asymmetry: AsymmetryMaps


def _infarct_model_labels(path: Path, device: str, hu: np.ndarray) -> np.ndarray:
    """The infarct model's label map (z, y, x) of the aligned HU volume (input: image and mirror)."""
    set_cpu_threads()
    model = load_torchscript(path, device)
    img = normalise(hu)
    x = np.stack([to_model_layout(img), to_model_layout(mirror(img))])[None]
    labels, _ = predict_labels(model, x, device)
    del model
    release_device_memory(device)
    return from_model_layout(labels)


def segment_infarct(pre, models_dir: Optional[Path], device: Optional[str] = None) -> InfarctSegmentation:
    """Infarct on the aligned grid: the model with the baseline's consensus, else the baseline."""
    t0 = time.perf_counter()
    hu = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    path = model_file(models_dir, INFARCT_MODEL)
    if path is None:
        log.info("infarct: no %s model in %s; bilateral asymmetry baseline", INFARCT_MODEL, models_dir)
        maps = asymmetry_maps(hu, brain, grid=pre.aligned)
        mask, info = asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=maps)
        info.update(device=CPU, seconds=round(time.perf_counter() - t0, 3))
        return InfarctSegmentation(_on_aligned(mask, pre), "asymmetry", CPU, info, maps)
    device = resolve_device(device)
    # The model and the baseline's mirror registration are independent and both leave the GIL
    # (torch, ANTs): the model runs in a second thread while ANTs works in this one.
    with ThreadPoolExecutor(1, thread_name_prefix="infarct-model") as pool:
        model_labels = pool.submit(_infarct_model_labels, path, device, hu)
        maps = asymmetry_maps(hu, brain, grid=pre.aligned)
        labels = model_labels.result()
    raw = (labels == 1) & brain
    support, _ = asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=maps)
    mask, kept, dropped = consensus_components(raw, support)
    voxel_ml = ALIGNED_SPACING**3 / 1000.0
    vol = float(mask.sum()) * voxel_ml
    dropped_ml = float(raw.sum() - mask.sum()) * voxel_ml
    if dropped:
        log.info("infarct: %d model component(s), %.1f ml, without asymmetry support dropped", dropped, dropped_ml)
    info = {"method": "model", "model": str(path), "device": device, "volume_ml": round(vol, 2),
            "consensus": {"kept_components": kept, "dropped_components": dropped, "dropped_ml": round(dropped_ml, 2)},
            "seconds": round(time.perf_counter() - t0, 3)}
    return InfarctSegmentation(_on_aligned(mask, pre), "model", device, info, maps)
