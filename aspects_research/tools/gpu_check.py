"""The infarct model on a GPU against the CPU, on studies the app has aligned: agreement and timing.

A GPU host of the project's device pool has PyTorch and NumPy but none of the imaging stack
(SimpleITK, ANTs, pydicom), and a call there carries at most 64 MiB. So the check comes in two
steps: ``prepare`` runs here, through the app's own stages, and saves what the model sees;
``check`` needs only ``numpy``, ``scipy``, ``torch``, ``aspects.inference`` / ``aspects.model_io`` and ``aspects_research.metrics`` (all on that host):

    python -m aspects_research.tools.gpu_check prepare STUDY_DIR [STUDY_DIR ...] --out build/gpu_inputs [--models models]
    python -m aspects_research.tools.gpu_check check --inputs build/gpu_inputs --models models --device cuda --json OUT.json

``prepare``: scan, select, load and preprocess each study (:mod:`aspects.pipeline`'s stages) and
write ``<out>/<study>.npz`` with the aligned HU volume and brain mask (z, y, x) and the labels of
the app's CPU path (:class:`aspects.segmentation.TorchModel`). ``check``: on ``--device``, the
same input construction (:func:`aspects.model_io.infarct_input`) and :func:`aspects.inference.predict_labels`; per study the Dice and the number of voxels
whose label differs from the CPU reference inside the brain, the model-load time, the median of
``--repeats`` timed predictions after ``--warmup`` untimed ones (CUDA synchronised), and on CUDA
the peak memory the predictions allocated. Exit 0 when every study agrees (Dice >= ``--min-dice``,
default 0.99: the issue-14 rule for masks), 1 when one does not, 2 for a bad device or input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from aspects.errors import EXIT_USAGE, InputError
from aspects.inference import CPU, load_torchscript, predict_labels, resolve_device, set_cpu_threads
from aspects.model_io import from_model_layout, infarct_input
from aspects_research.metrics import agreement_dice

INFARCT_MODEL = "infarct_seg"  # aspects.segmentation.INFARCT_MODEL, without importing the imaging stack
MIRROR_TTA = "agree"  # aspects.segmentation.INFARCT_MIRROR_TTA (tests/test_mirror_tta.py checks they agree)


def model_labels(module: Any, hu_zyx: np.ndarray, device: str, counterpart: Optional[np.ndarray] = None) -> np.ndarray:
    """The infarct model's labels (z, y, x) on ``device``, the input built as the app builds it
    (``counterpart``: the deformed mirror, for a model that declares it as its second channel)."""
    labels, _ = predict_labels(module, infarct_input(hu_zyx, counterpart), device, MIRROR_TTA)
    return from_model_layout(labels)


def prepare(studies: Sequence[Path], out: Path, models: Path) -> List[Path]:
    """Aligned volumes and CPU reference labels of ``studies`` (the app's stages) into ``out``."""
    from aspects.atlas import LazyAtlas
    from aspects.dicom_input import scan_folder
    from aspects.preprocess import preprocess_series
    from aspects.segmentation import SegmentationModels
    from aspects.series import choose_series, load_series
    import SimpleITK as sitk

    model = SegmentationModels.from_folder(models, CPU).infarct
    if model is None:
        raise InputError(EXIT_USAGE, f"no {INFARCT_MODEL} model in {models}")
    atlas = LazyAtlas()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, study in enumerate(studies, 1):
        pre = preprocess_series(load_series(choose_series(scan_folder(study))), atlas())
        hu = sitk.GetArrayFromImage(pre.aligned).astype(np.float32)
        brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
        extra = {}
        if model.second_channel == "contra":  # the input the app gives such a model (segment_infarct)
            from aspects.asymmetry import contralateral

            extra["counterpart"] = contralateral(hu, brain, pre.aligned)[0].astype(np.float32)
        reference = from_model_layout(model.predict(infarct_input(hu, extra.get("counterpart"))))
        name = study.parent.name if study.name == "dicom" else study.name  # CASE/dicom (aspects-make-phantoms)
        path = out / f"{name}.npz"
        np.savez_compressed(path, hu=hu, brain=brain, cpu_labels=reference.astype(np.uint8), **extra)
        written.append(path)
        print(f"[{k}/{len(studies)}] {name}: {path} ({int((reference == 1).sum())} infarct voxels on the CPU)", flush=True)
    return written


def check(inputs: Path, models: Path, device: str, warmup: int = 3, repeats: int = 10,
          min_dice: float = 0.99) -> Dict[str, Any]:
    """Agreement with the CPU reference and timing of the model on ``device`` (module docstring)."""
    import torch

    files = sorted(inputs.glob("*.npz"))
    if not files:
        raise InputError(EXIT_USAGE, f"no prepared studies (*.npz) in {inputs}")
    path = models / INFARCT_MODEL / f"{INFARCT_MODEL}.ts"
    if not path.is_file():
        raise InputError(EXIT_USAGE, f"no model at {path}")
    device = resolve_device(device)
    cuda = device != CPU
    if not cuda:
        set_cpu_threads()
    t0 = time.perf_counter()
    try:
        module = load_torchscript(path, device)
    except Exception as exc:  # e.g. a TorchScript file newer than this host's torch
        raise InputError(EXIT_USAGE, f"{path} does not load with torch {torch.__version__} on {device}: "
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    load_s = time.perf_counter() - t0
    rows = []
    for f in files:
        data = np.load(f)
        hu, brain, reference = data["hu"], data["brain"], data["cpu_labels"] == 1
        counterpart = data["counterpart"] if "counterpart" in data.files else None
        for _ in range(warmup):
            model_labels(module, hu, device, counterpart)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        seconds = []
        for _ in range(repeats):
            t = time.perf_counter()
            labels = model_labels(module, hu, device, counterpart)  # predict_labels copies to the host: synchronised
            seconds.append(time.perf_counter() - t)
        found = (labels == 1) & brain
        ref = reference & brain
        rows.append({"study": f.stem, "dice_vs_cpu": round(agreement_dice(found, ref), 5),
                     "voxels_differing": int((found ^ ref).sum()), "infarct_voxels_cpu": int(ref.sum()),
                     "median_s": round(float(np.median(seconds)), 4), "min_s": round(float(np.min(seconds)), 4),
                     "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None})
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    return {"device": device, "device_name": name, "torch": torch.__version__, "model": str(path),
            "model_load_s": round(load_s, 3), "warmup": warmup, "repeats": repeats, "min_dice": min_dice,
            "all_agree": all(r["dice_vs_cpu"] >= min_dice for r in rows), "studies": rows}


def report_lines(result: Dict[str, Any]) -> List[str]:
    lines = [f"{result['device']} ({result['device_name']}), torch {result['torch']}, model load {result['model_load_s']} s",
             "| study | Dice vs CPU | voxels differing | CPU infarct voxels | median s | min s | peak MB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["studies"]:
        lines.append(f"| {r['study']} | {r['dice_vs_cpu']:.4f} | {r['voxels_differing']} | {r['infarct_voxels_cpu']} | "
                     f"{r['median_s']:.4f} | {r['min_s']:.4f} | {r['peak_memory_mb'] if r['peak_memory_mb'] is not None else '-'} |")
    lines.append("all agree" if result["all_agree"] else f"NOT all agree (Dice < {result['min_dice']})")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aspects_research.tools.gpu_check", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="here: aligned volumes and CPU labels of study folders")
    p.add_argument("studies", type=Path, nargs="+", help="study folders (DICOM)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", type=Path, default=Path("models"))
    c = sub.add_parser("check", help="on the GPU host: agreement with the CPU labels and timing")
    c.add_argument("--inputs", type=Path, required=True)
    c.add_argument("--models", type=Path, default=Path("models"))
    c.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a CPU run checks the tool itself)")
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--repeats", type=int, default=10)
    c.add_argument("--min-dice", type=float, default=0.99)
    c.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    try:
        if args.step == "prepare":
            missing = [str(s) for s in args.studies if not s.is_dir()]
            if missing:
                raise InputError(EXIT_USAGE, f"study folder(s) not found: {' '.join(missing)}")
            prepare(args.studies, args.out, args.models)
            return 0
        if args.repeats < 1 or args.warmup < 0:
            raise InputError(EXIT_USAGE, "--repeats must be at least 1 and --warmup at least 0")
        result = check(args.inputs, args.models, args.device, args.warmup, args.repeats, args.min_dice)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    print("\n".join(report_lines(result)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
