"""Measure the in-plane noise power spectrum (NPS) of the real head CTs (run once; JSON committed).

    python -m aspects_research.tools.measure_nps [--real ../shared/data/real] [--out aspects_research/phantom_assets/noise_nps.json]
        [--figure docs/img/noise_nps.png]

Method (Boedeker et al. 2007; ICRU Report 87): square ROIs (about 15 mm) on every axial slice,
kept when they hold parenchyma only (mean 18-40 HU, no voxel below 3 or above 65 HU); each ROI is
detrended by a 2-D quadratic fit (anatomy and beam-hardening gradients out), its 2-D periodogram
``|FFT|^2 dx dy / (Nx Ny)`` averaged over ROIs (the 2 % of ROIs with the largest residual SD, edges
that slipped through, are dropped), radially averaged and normalised to a peak of 1. The residual
SD (median over ROIs) is the noise level of that series. Real heads: the GE series (4 / 7 mm
slices, 0.49 mm pixels; BSD-2) and the InVesalius example (1.5 mm, 0.96 mm; GPL-2: only these
two numbers per frequency, a measurement, are kept). Prints the curves and the SDs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

from aspects_research.phantom_lesions import default_real_data  # noqa: E402
from aspects_research.phantom_noise import NPS_FILE  # noqa: E402

ROI_MM = 15.0
PARENCHYMA_HU = (18.0, 40.0)
ROI_RANGE_HU = (3.0, 65.0)
DROP_FRACTION = 0.02


def radial_nps(vol: np.ndarray, pixel_mm: float, roi: int) -> Tuple[np.ndarray, np.ndarray, float, int]:
    """(frequency, NPS normalised to peak 1, median residual SD, number of ROIs) of ``(z, y, x)`` HU."""
    yy, xx = np.mgrid[:roi, :roi] / roi
    design = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * xx, xx * yy], -1).reshape(-1, 6)
    spectra, sds = [], []
    for sl in vol:
        for y in range(0, sl.shape[0] - roi, roi // 2):
            for x in range(0, sl.shape[1] - roi, roi // 2):
                r = sl[y:y + roi, x:x + roi].astype(np.float64)
                if not (PARENCHYMA_HU[0] < r.mean() < PARENCHYMA_HU[1]) or r.min() < ROI_RANGE_HU[0] or r.max() > ROI_RANGE_HU[1]:
                    continue
                coef, *_ = np.linalg.lstsq(design, r.ravel(), rcond=None)
                d = r - (design @ coef).reshape(roi, roi)
                sds.append(d.std())
                spectra.append(np.abs(np.fft.fft2(d)) ** 2 * pixel_mm * pixel_mm / (roi * roi))
    sds_a, spec = np.asarray(sds), np.asarray(spectra)
    keep = sds_a <= np.quantile(sds_a, 1.0 - DROP_FRACTION)
    p2 = spec[keep].mean(axis=0)
    f = np.fft.fftfreq(roi, pixel_mm)
    fr = np.hypot(f[:, None], f[None, :])
    nyq = 0.5 / pixel_mm
    edges = np.linspace(0.0, nyq, roi // 2 + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    rad = np.array([p2[(fr >= a) & (fr < b)].mean() for a, b in zip(edges[:-1], edges[1:])])
    return centres, rad / rad.max(), float(np.median(sds_a[keep])), int(keep.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=default_real_data())
    ap.add_argument("--out", type=Path, default=NPS_FILE)
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "noise_nps.png")
    a = ap.parse_args(argv)
    from aspects_research.phantom_anatomy import read_real_head

    curves, meta = {}, {}
    for name in ("ge", "invesalius"):
        img = read_real_head(name, a.real)
        vol = np.asarray(__import__("SimpleITK").GetArrayFromImage(img), np.float32)
        px = float(img.GetSpacing()[0])
        roi = int(round(ROI_MM / px))
        roi += roi % 2
        f, nps, sd, n = radial_nps(vol, px, roi)
        thick = float(img.GetSpacing()[2])
        curves[name] = {"frequency_per_mm": [round(float(v), 4) for v in f], "nps_normalised": [round(float(v), 4) for v in nps],
                        "pixel_mm": round(px, 4), "slice_step_mm": round(thick, 3), "residual_sd_hu": round(sd, 2), "rois": n}
        print(f"{name}: {n} ROIs of {roi} px ({roi * px:.1f} mm), residual SD {sd:.2f} HU, slice step {thick:.2f} mm")
        print("  " + " ".join(f"{x:.2f}:{y:.2f}" for x, y in zip(f, nps)))
    meta = {"method": "tools/measure_nps.py: detrended 15 mm parenchyma ROIs, radial average, normalised to peak 1",
            "date": dt.date.today().isoformat(), "curves": curves}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {a.out}")
    if str(a.figure):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for name, c in curves.items():
            ax.plot(c["frequency_per_mm"], c["nps_normalised"], "o-", ms=3,
                    label=f"{name} ({c['slice_step_mm']:g} mm step, SD {c['residual_sd_hu']:.1f} HU)")
        ax.set_xlabel("spatial frequency (cycles / mm)")
        ax.set_ylabel("NPS (normalised)")
        ax.set_title("In-plane noise power spectrum of the real head CTs")
        ax.legend(fontsize=8)
        fig.tight_layout()
        a.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.figure, dpi=100)
        print(f"wrote {a.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
