"""TorchScript loading and whole-volume inference on the aligned grid.

The aligned grid is small (``aspects.preprocess.ALIGNED_SIZE``, about 1 M voxels), so models run
on the whole volume at once: no sliding window, no stitching seams. CUDA is used when available
(clinical servers), the CPU otherwise; the device is returned so the app can report it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Tuple

import numpy as np

log = logging.getLogger(__name__)


def pick_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"`` (logged)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("inference device: %s", device)
    return device


def load_torchscript(path: Path, device: str):
    """Load a TorchScript model onto ``device`` in eval mode."""
    import torch

    with warnings.catch_warnings():  # torch marks jit.load deprecated; TorchScript is the contract
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path), map_location=device)
    model.eval()
    return model


def predict_labels(model, x_bcxyz: np.ndarray, device: str) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on a ``(1, C, X, Y, Z)`` float32 array; return (argmax labels, softmax).

    Both are ``(X, Y, Z)`` / ``(K, X, Y, Z)`` numpy arrays; the model must return logits
    ``(1, K, X, Y, Z)`` with the input's spatial size.
    """
    import torch

    if x_bcxyz.ndim != 5 or x_bcxyz.shape[0] != 1:
        raise ValueError(f"model input must be (1, C, X, Y, Z), not {x_bcxyz.shape}")
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(x_bcxyz, dtype=np.float32)).to(device)
        logits = model(x)
        if isinstance(logits, (list, tuple)):  # deep-supervision nets return several heads
            logits = logits[0]
        if tuple(logits.shape[2:]) != tuple(x.shape[2:]) or logits.shape[0] != 1:
            raise ValueError(f"model output {tuple(logits.shape)} does not match input {tuple(x.shape)}")
        prob = torch.softmax(logits.float(), dim=1)[0]
        labels = torch.argmax(prob, dim=0)
        return labels.to("cpu").numpy().astype(np.uint8), prob.to("cpu").numpy()
