"""Region and infarct segmentation on the aligned grid: the TorchScript model when one is
installed, else the documented fallback (atlas LNCC warp, bilateral asymmetry).

Infarct consensus: a connected component of the model's mask is kept only when the asymmetry
baseline also marks part of it (the model delineates, the baseline vetoes false positives;
figures in train/infarct_seg/docs/README.md), and only up to SUPPORT_REACH_MM from that mark.
Models: ``MODELS/<name>/<name>.ts``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects.asymmetry import AsymmetryMaps, asymmetry_infarct, asymmetry_maps
from aspects.atlas import Atlas, Slab
from aspects.errors import EXIT_USAGE, InputError
from aspects.methods import SECOND_CHANNELS, InfarctMethod, RegionMethod
from aspects.inference import (CPU, MirrorTTA, load_torchscript, predict_labels, release_device_memory, resolve_device,
                               set_cpu_threads)
from aspects.model_io import from_model_layout, infarct_input, model_input, to_model_layout
from aspects.preprocess import ALIGNED_SPACING, Preprocessed
from aspects.region_atlas import atlas_regions, territories_aligned

log = logging.getLogger(__name__)

REGION_MODEL = "aspects_regions"
INFARCT_MODEL = "infarct_seg"
# The infarct model's label stands only where its pass on the study and its pass on the study's
# mirror image agree (mirroring test-time augmentation, agreement; session 30, docs/results_v2.md:
# fewer false regions on every set and one control point fewer on each v2 set, for one true region
# lost, at 2.7 HU, and a lower median Dice on the fresh draw).
INFARCT_MIRROR_TTA = MirrorTTA.AGREE
N_REGION_CLASSES = 21


def embedded_metadata(path: Path) -> Dict[str, Any]:
    """A TorchScript model's embedded ``metadata.json`` (MONAI ``ckpt_export --meta_file``);
    ``{}`` when the file has none or cannot be read as a zip."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/extra/metadata.json")), None)
            meta = json.loads(z.read(name)) if name else {}
    except (OSError, zipfile.BadZipFile, ValueError):
        meta = {}
    return meta if isinstance(meta, dict) else {}


def declared_second_channel(path: Path, meta: Optional[Dict[str, Any]] = None) -> str:
    """Channel 1 of a TorchScript model's input as its embedded ``metadata.json`` (``meta``: that
    file's content when already read) declares it; ``"mirror"`` when the file has no such entry.
    Raises ValueError for a declaration the app cannot build."""
    meta = embedded_metadata(path) if meta is None else meta
    channel_def = (((meta.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}).get("channel_def") or {}
    second = str(channel_def.get("1", "mirror"))
    if second not in SECOND_CHANNELS:
        raise ValueError(f"{path}: input channel 1 is declared as {second!r}; the app builds {' or '.join(SECOND_CHANNELS)}")
    return second


def declared_version(path: Path, meta: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """The bundle version a TorchScript model's embedded ``metadata.json`` (``meta``: its content
    when already read) declares (``"version"``), None when it declares none."""
    version = (embedded_metadata(path) if meta is None else meta).get("version")
    return str(version) if version not in (None, "") else None


def model_file(models_dir: Optional[Path], name: str) -> Optional[Path]:
    """``models_dir/name/name.ts`` when it exists, else None."""
    if models_dir is None:
        return None
    path = Path(models_dir) / name / f"{name}.ts"
    return path if path.is_file() else None


class TorchModel:
    """One TorchScript model file on its device, loaded on first use.

    ``keep_loaded`` False (one study per process, the app): the weights are dropped after each
    prediction. True (a warm server): they stay; cached GPU memory of the activations is
    released after each prediction either way. ``mirror_tta``: how a prediction uses a second
    pass on the left-right mirror image (:func:`aspects.inference.predict_labels`).
    """

    def __init__(self, path: Path, device: str, keep_loaded: bool = False,
                 mirror_tta: MirrorTTA = MirrorTTA.OFF):
        self.path, self.device, self.keep_loaded = Path(path), device, keep_loaded
        self.mirror_tta = MirrorTTA(mirror_tta)
        self._module: Any = None
        self._lock = threading.Lock()

    @cached_property
    def _metadata(self) -> Dict[str, Any]:
        return embedded_metadata(self.path)

    @cached_property
    def second_channel(self) -> str:
        """What the model's input channel 1 is, as its embedded bundle metadata declares it
        (``network_data_format.inputs.image.channel_def["1"]``): ``"mirror"`` (the plain
        contralateral mirror; also when the file declares nothing) or ``"contra"`` (the mirror
        deformed onto the image by the asymmetry stage's registration)."""
        return declared_second_channel(self.path, self._metadata)

    @cached_property
    def version(self) -> Optional[str]:
        """The model's bundle version as its embedded metadata declares it (None: not declared)."""
        return declared_version(self.path, self._metadata)

    def load(self) -> Any:
        """The loaded module (kept for the next call when ``keep_loaded``)."""
        with self._lock:
            module = self._module if self._module is not None else load_torchscript(self.path, self.device)
            self._module = module if self.keep_loaded else None
        return module

    def predict(self, x_bcxyz: np.ndarray, module: Any = None) -> np.ndarray:
        """Argmax labels ``(X, Y, Z)`` of the model on a ``(1, C, X, Y, Z)`` input; ``module``:
        this model's :meth:`load` result when already loaded."""
        if self.device == CPU:
            set_cpu_threads()
        module = module if module is not None else self.load()
        labels, _ = predict_labels(module, x_bcxyz, self.device, self.mirror_tta)
        del module
        release_device_memory(self.device)
        return labels


@dataclass(frozen=True)
class SegmentationModels:
    """The installed models (None: that stage uses its fallback) and the device they run on."""

    infarct: Optional[TorchModel]
    regions: Optional[TorchModel]
    device: str = CPU

    @classmethod
    def from_folder(cls, models_dir: Optional[Path], device: Optional[str] = None,
                    keep_loaded: bool = False) -> SegmentationModels:
        """Models of ``models_dir``; the device is resolved (:func:`aspects.inference.resolve_device`)
        only when a model is installed, so a CUDA request on a host without one fails (exit 2)."""
        paths = {name: model_file(models_dir, name) for name in (INFARCT_MODEL, REGION_MODEL)}
        if not any(paths.values()):
            log.info("no model in %s: atlas and asymmetry fallbacks", models_dir)
            return cls(None, None, CPU)
        dev = resolve_device(device)
        infarct_path, region_path = paths[INFARCT_MODEL], paths[REGION_MODEL]
        infarct = TorchModel(infarct_path, dev, keep_loaded, INFARCT_MIRROR_TTA) if infarct_path else None
        regions = TorchModel(region_path, dev, keep_loaded) if region_path else None
        if infarct is not None:
            try:  # a model whose input the app cannot build is a deployment error, found before any study
                log.info("infarct model %s: input channel 1 = %s", infarct.path.name, infarct.second_channel)
            except ValueError as exc:
                raise InputError(EXIT_USAGE, str(exc)) from exc
        return cls(infarct, regions, dev)


def _on_aligned(arr_zyx: np.ndarray, pre: Preprocessed) -> sitk.Image:
    arr = np.asarray(arr_zyx, dtype=np.uint8).copy()
    arr[sitk.GetArrayViewFromImage(pre.brain_mask) == 0] = 0
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(pre.aligned)
    return img


@dataclass(frozen=True)
class RegionSegmentation:
    """The region segmenter's result on the aligned grid.

    ``labels``: uint8 ``aspects.labels`` values; ``territories``: arterial territories of the
    atlas (affine, for the ``infarct_outside_mca`` flag); ``device``: where a model ran (``"cpu"``
    for the atlas path); ``seconds``: the stage time; ``levels``: the atlas's BG / SG slabs
    (physical z of the aligned grid, which is the atlas's frame; None: not known).
    """

    labels: sitk.Image
    territories: sitk.Image
    method: RegionMethod
    device: str
    seconds: float
    levels: Optional[Dict[str, Slab]] = None
    model_version: Optional[str] = None


def segment_regions(pre: Preprocessed, atlas: Atlas, model: Optional[TorchModel] = None) -> RegionSegmentation:
    """The 20 ASPECTS regions of ``pre``: ``model`` when given, else the atlas LNCC warp."""
    t0 = time.perf_counter()
    if model is None:
        log.info("regions: no %s model; atlas LNCC registration", REGION_MODEL)
        labels, method, device = atlas_regions(pre, atlas), RegionMethod.ATLAS, CPU
    else:
        x = model_input(to_model_layout(sitk.GetArrayFromImage(pre.aligned)), with_mirror=False)[None]
        arr = from_model_layout(model.predict(x))
        if arr.max() >= N_REGION_CLASSES:
            raise ValueError(f"{model.path}: label {arr.max()} outside 0..{N_REGION_CLASSES - 1}")
        labels, method, device = _on_aligned(arr, pre), RegionMethod.MODEL, model.device
    territories = territories_aligned(pre, atlas)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("regions by %s in %.1f s", method, seconds)
    return RegionSegmentation(labels, territories, method, device, seconds, dict(atlas.levels),
                              None if model is None else model.version)


# the least share of an asymmetry component the kept infarct must cover to be grown into it
# (grow_into_support; chosen on the v2 validation split, docs/results_v2.md)
GROW_MIN_SHARE = 0.2


def consensus_components(model_mask: np.ndarray, support: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """Components (26-connected) of ``model_mask`` that touch ``support``: (mask, kept, dropped)."""
    lab, n = ndi.label(model_mask, structure=np.ones((3, 3, 3), bool))
    touched = np.unique(lab[support & (lab > 0)])
    return np.isin(lab, touched), int(touched.size), int(n - touched.size)


# how far (mm) from the asymmetry baseline's mask a kept model component may reach (trim_to_support;
# chosen on the v2 validation split, docs/results_v2.md, session 18)
SUPPORT_REACH_MM = 16.0


def trim_to_support(mask: np.ndarray, support: np.ndarray, reach_mm: float = SUPPORT_REACH_MM,
                    spacing_mm: float = ALIGNED_SPACING) -> np.ndarray:
    """``mask`` without its voxels farther than ``reach_mm`` from ``support``.

    The consensus keeps a model component whole when any voxel of it touches the support; a
    component can run on for centimetres along tissue no darker than its mirror (a 10.9 HU, 9 ml
    infarct of the v2 test split came with 44 ml of such tissue in one component). Cutting it back
    to a margin around what the bilateral comparison sees keeps the lesion and its soft edge."""
    out = mask.astype(bool)
    if not out.any():
        return out
    if not np.isfinite(reach_mm):
        return out
    # Only support within reach of the mask matters: the distance is taken on the mask's bounding
    # box widened by the reach (the same voxels as on the whole grid, in a fraction of the time).
    pad = int(np.ceil(reach_mm / spacing_mm)) + 1
    spans = (np.flatnonzero(out.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    box = tuple(slice(max(int(i[0]) - pad, 0), int(i[-1]) + pad + 1) for i in spans)
    near = np.asarray(support, bool)[box]
    if not near.any():
        return np.zeros_like(out)
    out[box] &= ndi.distance_transform_edt(~near, sampling=spacing_mm) <= reach_mm  # no mask outside the box
    return out


def grow_into_support(mask: np.ndarray, support: np.ndarray, min_share: float = GROW_MIN_SHARE) -> np.ndarray:
    """``mask`` with the components (26-connected) of ``support`` of which it covers at least
    ``min_share`` (0: every component it touches).

    The infarct model under-segments faint lesions (it finds their core); the asymmetry baseline's
    component that holds that core is the lesion's extent as the bilateral comparison sees it. Only
    components the mask covers in good part are added, so the baseline alone never makes a lesion
    and a speck of the mask does not claim a large asymmetry."""
    grown = mask.astype(bool)
    if not grown.any():
        return grown
    lab, n = ndi.label(support, structure=np.ones((3, 3, 3), bool))
    size = np.bincount(lab.ravel(), minlength=n + 1)
    covered = np.bincount(lab[grown], minlength=n + 1)
    add = (covered > 0) & (covered >= min_share * size)
    add[0] = False
    return grown | add[lab]


# A kept lesion ends where its darkening falls below this fraction of its own (its core: the
# EDGE_CORE_PERCENTILE-th percentile of the difference map over the lesion), for lesions whose core
# is at least EDGE_MIN_CORE_HU darker than the mirror (lesion_edge; chosen on the v2 validation
# split, docs/results_v2.md, session 23).
EDGE_FRACTION = 0.3
EDGE_MIN_CORE_HU = 5.0
EDGE_CORE_PERCENTILE = 75.0


def lesion_edge(mask: np.ndarray, difference: np.ndarray, fraction: float = EDGE_FRACTION,
                min_core_hu: float = EDGE_MIN_CORE_HU, percentile: float = EDGE_CORE_PERCENTILE) -> np.ndarray:
    """``mask`` without the voxels of each component (26-connected) whose contralateral difference
    is below ``fraction`` of that component's core, where the core is at least ``min_core_hu``.

    A clearly visible lesion has its own contrast; the model and the growth into the asymmetry also
    take the 2-4 HU tissue around a 10 HU infarct (the smoothed difference map's tail, a patch of
    natural asymmetry beside it), which spills into neighbouring regions. Cutting each lesion at a
    fraction of its own contrast is the adaptive threshold of Erdi et al. (1997) for PET lesions.
    A faint lesion (core below ``min_core_hu``) is left whole: its edge is inside the noise."""
    out = mask.astype(bool)  # a copy: the caller's mask is not changed
    if not out.any():
        return out
    lab, _ = ndi.label(out, structure=np.ones((3, 3, 3), bool))
    for i, box in enumerate(ndi.find_objects(lab), start=1):  # ndi.label numbers 1..n: no gaps
        comp = lab[box] == i
        d = difference[box]
        core = float(np.percentile(d[comp], percentile))
        if core >= min_core_hu:
            out[box] &= ~(comp & (d < fraction * core))
    return out


@dataclass(frozen=True)
class InfarctSegmentation:
    """The infarct segmenter's result on the aligned grid.

    ``mask``: uint8 0/1; ``device``: where the model ran (``"cpu"`` | ``"cuda:N"``; the baseline
    is CPU code); ``info``: summary for the log (JSON-able, ``seconds`` the stage time);
    ``asymmetry``: the contralateral comparison, reused by the region-level evidence;
    ``support``: the asymmetry baseline's mask (bool, ``(z, y, x)`` on the aligned grid) when a
    model segmented, into which the scorer grows the lesions it keeps (:func:`grow_into_support`).
    """

    mask: sitk.Image
    method: InfarctMethod
    device: str
    info: Dict[str, object]
    asymmetry: AsymmetryMaps
    support: Optional[np.ndarray] = None


def segment_infarct(pre: Preprocessed, model: Optional[TorchModel] = None) -> InfarctSegmentation:
    """Infarct on the aligned grid: ``model`` with the baseline's consensus, else the baseline."""
    t0 = time.perf_counter()
    hu = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    if model is None:
        log.info("infarct: no %s model; bilateral asymmetry baseline", INFARCT_MODEL)
        maps = asymmetry_maps(hu, brain, grid=pre.aligned)
        mask, info = asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=maps)
        info.update(device=CPU, seconds=round(time.perf_counter() - t0, 3))
        return _done(InfarctSegmentation(_on_aligned(mask, pre), InfarctMethod.ASYMMETRY, CPU, info, maps))
    if model.second_channel == "contra":
        # a model trained on the deformed mirror waits for the registration that makes it
        # (the model itself takes ~0.2 s on a CPU core); it is loaded meanwhile
        with ThreadPoolExecutor(1, thread_name_prefix="infarct-model") as pool:
            loaded = pool.submit(model.load)
            maps = asymmetry_maps(hu, brain, grid=pre.aligned)
            module = loaded.result()
        raw = (from_model_layout(model.predict(infarct_input(hu, maps.counterpart), module)) == 1) & brain
        del module
    else:
        # The model and the baseline's mirror registration are independent and both release the GIL
        # (torch, ANTs): the model runs in a second thread while ANTs works in this one.
        with ThreadPoolExecutor(1, thread_name_prefix="infarct-model") as pool:
            predicted = pool.submit(model.predict, infarct_input(hu))
            maps = asymmetry_maps(hu, brain, grid=pre.aligned)
            raw = (from_model_layout(predicted.result()) == 1) & brain
    support, _ = asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=maps)
    consensus, kept, dropped = consensus_components(raw, support)
    mask = trim_to_support(consensus, support)
    voxel_ml = ALIGNED_SPACING**3 / 1000.0
    vol = float(mask.sum()) * voxel_ml
    dropped_ml = float(raw.sum() - consensus.sum()) * voxel_ml
    trimmed_ml = float(consensus.sum() - mask.sum()) * voxel_ml
    if dropped:
        log.info("infarct: %d model component(s), %.1f ml, without asymmetry support dropped", dropped, dropped_ml)
    if trimmed_ml > 0:
        log.info("infarct: %.1f ml of kept components farther than %.0f mm from the asymmetry support cut",
                 trimmed_ml, SUPPORT_REACH_MM)
    info = {"method": "model", "model": str(model.path), "model_version": model.version, "device": model.device,
            "second_channel": model.second_channel,
            "mirror_tta": model.mirror_tta.value, "volume_ml": round(vol, 2),
            "consensus": {"kept_components": kept, "dropped_components": dropped, "dropped_ml": round(dropped_ml, 2),
                          "trimmed_ml": round(trimmed_ml, 2), "support_reach_mm": SUPPORT_REACH_MM},
            "seconds": round(time.perf_counter() - t0, 3)}
    return _done(InfarctSegmentation(_on_aligned(mask, pre), InfarctMethod.MODEL, model.device, info, maps, support))


def _done(result: InfarctSegmentation) -> InfarctSegmentation:
    log.info("infarct by %s on %s in %.1f s: %s", result.method, result.device, result.info["seconds"], result.info)
    return result
