"""What each heavy stage of the app costs on one study, one at a time, and side by side.

    python -m aspects_research.tools.stage_costs STUDY_DICOM_DIR [--models models] [--seg]

Runs the app's stages in one process (serially, so that each one's wall and CPU seconds are its
own), then the region warp beside the asymmetry baseline's mirror SyN in two threads, as the app
runs them (their wall time there shows whether one stalls the other), and with ``--seg`` the SEG
build. Prints one line per stage: wall s, CPU s (the process and its children: the forked ANTs
registrations), the stage's own peak RSS (MB; the high-water mark is reset before each stage,
:mod:`aspects.memory`, where the kernel allows it, else the process's peak so far). Numbers for
docs/performance.md; not a test.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the forked ANTs registrations)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from aspects.memory import peak_rss_mb, reset_peak_rss

    own = reset_peak_rss()
    t, c = time.perf_counter(), _cpu()
    out = fn(*args, **kwargs)
    label = "peak RSS" if own else "peak RSS so far"
    print(f"{name:34s} wall {time.perf_counter() - t:7.2f} s  cpu {_cpu() - c:7.2f} s  {label} {peak_rss_mb():6.0f} MB",
          flush=True)
    return out


def _thread_timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="folder with the study's DICOM files")
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--seg", action="store_true", help="also time the DICOM SEG build")
    args = ap.parse_args(argv)

    import SimpleITK as sitk
    import torch

    from aspects.asymmetry import contralateral
    from aspects.assess import ScoringSettings, assess_study
    from aspects.atlas import load_atlas
    from aspects.dicom_seg import build_segmentation
    from aspects.model_io import infarct_input
    from aspects.preprocess import aligned_template, preprocess
    from aspects.region_atlas import fit_displacement, warp_atlas_labels
    from aspects.segmentation import SegmentationModels, segment_infarct, segment_regions
    from aspects.series import read_study

    series = _timed("read + HU volume", read_study, args.study)
    atlas = load_atlas(None)
    _timed("atlas on the aligned grid", aligned_template, atlas)
    pre = _timed("preprocess (registration inside)", preprocess, series.volume.image, atlas,
                 geometry=series.volume.geometry)
    print(f"  {pre.timings}")
    hu = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    template = sitk.GetArrayFromImage(pre.template)

    def fit():
        with torch.enable_grad():
            return fit_displacement(hu, template)

    disp = _timed("region LNCC fit", fit)
    _timed("region labels through the field", warp_atlas_labels, atlas.labels, pre.aligned, disp, 21)
    _timed("mirror SyN (asymmetry baseline)", contralateral, hu, brain, pre.aligned)
    models = SegmentationModels.from_folder(args.models)
    if models.infarct is not None:
        x = infarct_input(hu)
        _timed("infarct model (load + run)", models.infarct.predict, x)
    with ThreadPoolExecutor(2) as pool:
        syn = pool.submit(_thread_timed, lambda: contralateral(hu, brain, pre.aligned))
        lncc = pool.submit(_thread_timed, fit)
        print(f"side by side: mirror SyN wall {syn.result():.2f} s, LNCC fit wall {lncc.result():.2f} s", flush=True)
    if args.seg:
        infarct = _timed("segment infarct", segment_infarct, pre, models.infarct)
        regions = _timed("segment regions", segment_regions, pre, atlas, models.regions)
        scored = _timed("scoring", assess_study, series, pre, infarct, regions, ScoringSettings())
        _timed("SEG build", build_segmentation, list(scored.source), scored.infarct, scored.regions,
               scored.document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
