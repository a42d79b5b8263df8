"""Scanner-like CT noise for the synthetic studies: the noise power spectrum (NPS) of real head CT.

CT noise is not white: filtered back-projection shapes it (a ramp times the reconstruction
kernel's apodisation), so it has a grain of a few mm and almost no power at the finest and the
coarsest scales. ``tools/measure_nps.py`` measures the in-plane NPS of the two real head CTs
(detrended 2-D ROIs in homogeneous parenchyma, Boedeker et al. 2007 / ICRU Report 87 method) and
writes the radially averaged, normalised curves to ``aspects_research/phantom_assets/noise_nps.json``.
:func:`nps_noise` shapes white noise with one of them (the square root of the NPS as the
filter's amplitude) at the slice's pixel size and scales it to the requested standard deviation.
Slices are independent (no through-plane correlation).

The noise level follows the slice thickness as quantum noise does (variance inversely
proportional to the slab): ``sigma(t) = sigma_5mm * sqrt(5 / t)`` (measured on the real heads:
3.4 HU at 4 mm, 6.2 HU at 1.5 mm, docs/data.md).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

NPS_FILE = Path(__file__).resolve().parent / "phantom_assets" / "noise_nps.json"


@functools.lru_cache(maxsize=1)
def load_nps(path: str = str(NPS_FILE)) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{name: (frequency cycles/mm, normalised NPS)}`` of each measured scanner."""
    data = json.loads(Path(path).read_text())
    return {k: (np.asarray(v["frequency_per_mm"], float), np.asarray(v["nps_normalised"], float))
            for k, v in data["curves"].items()}


def sigma_for_thickness(sigma_5mm: float, thickness_mm: float) -> float:
    """Noise SD of a slice of ``thickness_mm`` when a 5 mm slice has ``sigma_5mm``."""
    return float(sigma_5mm * np.sqrt(5.0 / max(thickness_mm, 0.1)))


def _amplitude(fr: np.ndarray, curve: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """sqrt of the NPS at radial frequencies ``fr``; below the lowest measured bin the NPS of a
    CT falls linearly to 0 at f = 0 (the ramp filter)."""
    freq, nps = curve
    f0, p0 = float(freq[0]), float(nps[0])
    power = np.where(fr < f0, p0 * fr / f0, np.interp(fr, freq, nps, right=0.0))
    return np.sqrt(np.clip(power, 0.0, None)).astype(np.float32)


def nps_noise(rng: np.random.Generator, shape: Tuple[int, int, int], pixel_mm: float, sigma_hu: float,
              curve: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(z, y, x)`` noise with the in-plane NPS ``curve`` and standard deviation ``sigma_hu``
    (square slices; each slice independent)."""
    nz, ny, nx = shape
    if sigma_hu <= 0:
        return np.zeros(shape, np.float32)
    if ny != nx:
        raise ValueError(f"square slices expected, not {ny} x {nx}")
    f = np.fft.fftfreq(nx, pixel_mm)
    filt = _amplitude(np.hypot(f[:, None], np.fft.rfftfreq(nx, pixel_mm)[None, :]), curve)
    # Variance of white noise (unit variance) after the filter: the mean of |H|^2 over the full spectrum.
    gain = float(np.sqrt(np.mean(_amplitude(np.hypot(f[:, None], f[None, :]), curve).astype(np.float64) ** 2)))
    scale = np.float32(sigma_hu / gain) if gain > 0 else np.float32(0.0)
    out = np.empty(shape, np.float32)
    for k in range(nz):
        white = rng.standard_normal((ny, nx), dtype=np.float32)
        out[k] = np.fft.irfft2(np.fft.rfft2(white) * filt, s=(ny, nx)) * scale
    return out
