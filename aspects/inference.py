"""TorchScript loading, the device contract and whole-volume inference on the aligned grid.

The aligned grid is small (``aspects.preprocess.ALIGNED_SIZE``, about 1 M voxels), so models run
on the whole volume at once: no sliding window, no stitching seams.

Device contract: a device is always the canonical string ``"cpu"`` or ``"cuda:N"`` (what
aspects.json reports and its validator accepts). :func:`resolve_device` is the one place that
picks it: an explicit request, else ``$ASPECTS_DEVICE`` (``auto`` | ``cpu`` | ``cuda`` |
``cuda:N``), else ``auto`` = the current CUDA device when torch sees one, the CPU otherwise.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from aspects.errors import EXIT_USAGE, InputError

log = logging.getLogger(__name__)

DEVICE_ENV = "ASPECTS_DEVICE"


class DeviceKind(StrEnum):
    """The kind of a canonical device string (``"cpu"`` or ``"cuda:N"``)."""

    CPU = "cpu"
    CUDA = "cuda"


CPU = DeviceKind.CPU.value
_REQUEST = re.compile(r"^(auto|cpu|cuda(?::(\d+))?)$")
_CANONICAL = re.compile(r"^(cpu|cuda:[0-9]+)$")


def device_kind(device: str) -> DeviceKind:
    """:class:`DeviceKind` of a canonical device; ValueError for anything else (a bare ``"cuda"``
    included: aspects.json and the logs always name the GPU)."""
    if not _CANONICAL.match(device):
        raise ValueError(f"not a canonical device: {device!r} (expected 'cpu' or 'cuda:N')")
    return DeviceKind.CPU if device == CPU else DeviceKind.CUDA


def resolve_device(requested: Optional[str] = None) -> str:
    """Canonical ``"cpu"`` / ``"cuda:N"`` for ``requested`` (None: ``$ASPECTS_DEVICE``, else auto).

    Raises :class:`InputError` (exit 2, usage) for a malformed request or a CUDA device that torch
    does not see: asking for a GPU and silently getting the CPU would hide a broken server.
    """
    raw = requested if requested is not None else os.environ.get(DEVICE_ENV, "")
    value = raw.strip().lower() or "auto"
    match = _REQUEST.match(value)
    if match is None:
        raise InputError(EXIT_USAGE, f"device {raw!r} (${DEVICE_ENV}): expected auto, cpu, cuda or cuda:N")
    if value == CPU:
        return CPU
    import torch

    available = torch.cuda.is_available()
    if value == "auto":
        device = f"cuda:{torch.cuda.current_device()}" if available else CPU
    else:
        if not available:
            raise InputError(EXIT_USAGE, f"device {value!r} requested (${DEVICE_ENV}) but torch sees no CUDA GPU")
        index = int(match.group(2)) if match.group(2) is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise InputError(EXIT_USAGE, f"device {value!r} requested (${DEVICE_ENV}) but torch sees {count} CUDA GPU(s)")
        device = f"cuda:{index}"
    log.info("inference device: %s%s", device, f" ({torch.cuda.get_device_name(device)})" if device != CPU else "")
    return device


# Intra-op threads of torch on the CPU. The app runs its stages side by side (the two segmenters,
# the infarct model beside the baseline's ANTs registration), so one thread each: a second one
# only contends (on a loaded 2-core host the infarct model took 1.5 s with two threads against
# 0.75 s with one, 2026-12-02) and a fixed count keeps CPU results identical run to run.
CPU_THREADS = 1


def set_cpu_threads(threads: int = CPU_THREADS) -> None:
    """Set torch's intra-op CPU thread count (process-wide) to ``threads``."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_torchscript(path: Path, device: str):
    """Load a TorchScript model onto ``device`` in eval mode."""
    import torch

    with warnings.catch_warnings():  # torch marks jit.load deprecated; TorchScript is the contract
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path), map_location=device)
    model.eval()
    return model


def release_device_memory(device: str) -> None:
    """Return cached GPU memory to the driver once a study's models are dropped (no-op on CPU):
    a long-running process must not hold one study's activations while the next one loads."""
    if device_kind(device) is DeviceKind.CPU:
        return
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    log.info("released cached memory on %s (%.0f MB still allocated)", device,
             torch.cuda.memory_allocated(device) / 2**20)


class MirrorTTA(StrEnum):
    """Mirroring test-time augmentation of a model (:func:`predict_labels`)."""

    OFF = "off"  # one pass
    MEAN = "mean"  # the argmax of the two passes' mean softmax (nnU-Net's mirroring)
    AGREE = "agree"  # a class only where both passes' argmax say so, background elsewhere


MIRROR_TTA_MODES = tuple(m.value for m in MirrorTTA)  # as aspects.json and the tools spell them


def predict_labels(model, x_bcxyz: np.ndarray, device: str,
                   mirror_tta: MirrorTTA = MirrorTTA.OFF) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on a ``(1, C, X, Y, Z)`` float32 array; return (argmax labels, softmax).

    Both are ``(X, Y, Z)`` / ``(K, X, Y, Z)`` numpy arrays; the model must return logits
    ``(1, K, X, Y, Z)`` with the input's spatial size. Softmax and argmax run on ``device``.

    ``mirror_tta``: mirroring test-time augmentation (Isensee et al. 2021, nnU-Net) in x, the
    model layout's left-right axis: a second pass on the input flipped in x (every channel),
    flipped back. ``MEAN``: the argmax of the two softmaxes' mean; ``AGREE``: a voxel keeps a
    class only where both passes' argmax give it, label 0 (background) elsewhere, so a model
    label stands only where the study and its mirror image agree (the softmax returned is the
    mean). Either way both sides are treated exactly alike: the labels of a flipped input are the
    flipped labels. On the CPU the flipped pass runs in a second thread (torch releases the GIL),
    each pass as one call alone would give; on a GPU one after the other.
    """
    import torch

    if x_bcxyz.ndim != 5 or x_bcxyz.shape[0] != 1:
        raise ValueError(f"model input must be (1, C, X, Y, Z), not {x_bcxyz.shape}")
    mode = MirrorTTA(mirror_tta)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(x_bcxyz, dtype=np.float32)).to(device)
        if mode is MirrorTTA.OFF:
            prob = _softmax(model, x)
            labels = first_argmax(prob)
        else:
            if device == CPU:
                with ThreadPoolExecutor(1, thread_name_prefix="mirror-tta") as pool:
                    flipped = pool.submit(_softmax_in_thread, model, torch.flip(x, dims=[2]))
                    prob = _softmax(model, x)
                    prob_m = torch.flip(flipped.result(), dims=[1])
            else:
                prob = _softmax(model, x)
                prob_m = torch.flip(_softmax(model, torch.flip(x, dims=[2])), dims=[1])
            mean = 0.5 * (prob + prob_m)
            if mode is MirrorTTA.MEAN:
                labels = first_argmax(mean)
            else:
                labels, labels_m = first_argmax(prob), first_argmax(prob_m)
                labels = torch.where(labels == labels_m, labels, 0)
            prob = mean
        return labels.to(CPU).numpy().astype(np.uint8), prob.to(CPU).numpy()


def _softmax(model, x):
    """The model's class probabilities ``(K, X, Y, Z)`` on ``x`` ``(1, C, X, Y, Z)``."""
    import torch

    logits = model(x)
    if isinstance(logits, (list, tuple)):  # deep-supervision nets return several heads
        logits = logits[0]
    if tuple(logits.shape[2:]) != tuple(x.shape[2:]) or logits.shape[0] != 1:
        raise ValueError(f"model output {tuple(logits.shape)} does not match input {tuple(x.shape)}")
    return torch.softmax(logits.float(), dim=1)[0]


def _softmax_in_thread(model, x):
    """:func:`_softmax` in a worker thread (torch's inference mode is per thread; the intra-op
    thread count, process-wide, is the caller's)."""
    import torch

    with torch.inference_mode():
        return _softmax(model, x)


def first_argmax(prob):
    """``torch.argmax(prob, dim=0)`` (the first class of the largest value) for a ``(K, ...)``
    tensor of finite values, as K - 1 elementwise comparisons. torch's argmax over the leading
    dimension of a (2, 96, 112, 96) CPU tensor took 0.11 s on one thread, on the 5 mm critical
    path after the mirror registration; this takes ~2 ms and gives the same labels, ties included
    (a later class wins only when strictly larger)."""
    import torch

    labels = torch.zeros(prob.shape[1:], dtype=torch.int64, device=prob.device)
    best = prob[0]
    for k in range(1, prob.shape[0]):
        better = prob[k] > best
        labels = torch.where(better, k, labels)
        best = torch.where(better, prob[k], best)
    return labels
