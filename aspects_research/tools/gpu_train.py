"""Train the infarct bundle on a GPU host of the device pool: pack the aligned data here, run there.

Such a host has PyTorch, NumPy and SciPy but none of the imaging stack (SimpleITK, ANTs, pydicom),
no network, a 64 MiB limit on what a call carries (the repository included, ~11 MiB) and 10 minutes
a command. So training there comes in two steps:

    # here: the aligned datalist of aspects-make-datalist (--contra for the shipped model's input)
    python -m aspects_research.tools.gpu_train pack build/data/aligned_contra --out build/gpu_train
    # there: device `run` with carry ["build/gpu_train"], timeout_s 600 (the script installs the
    # packed wheels, then runs `gpu_train run --data build/gpu_train --out $OUT --minutes 8`)
    bash tools/gpu_train_device.sh --minutes 8

``pack`` copies the datalist's volumes with their HU clipped to the model's window
(:data:`aspects.model_io.HU_WINDOW`: the bundle's first transform clips there anyway) and stored as
int16 in ``--step`` HU (0.25: a rounding of at most 0.125 HU, 0.07 HU SD inside the brain, against
the phantoms' noise of several HU), labels as uint8: ~0.55 MB a study instead of ~1.5. Validation
studies first, then training studies in the datalist's order until ``--max-mib`` (with the wheels)
is reached; it says how many it left out. It also writes the bundle's TAGL slabs (computed here
with SimpleITK, which the GPU host lacks) and, unless ``--no-wheels``, downloads the wheels the
bundle needs there (monai, nibabel, pytorch-ignite, at this environment's versions).

``run`` is ``monai.bundle run`` of ``train.json`` (+ ``contra.json`` when the data has the
deformed mirror) on the packed data, on ``--device`` (auto: the GPU when torch sees one), with a
:class:`aspects_research.training_budget.TimeBudget` that ends training on an epoch boundary before
``--minutes`` (and cuts the cosine learning-rate schedule to the epochs that fit, once the
first validation interval has been timed), a checkpoint every ``--ckpt-interval`` epochs and
of the last, and ``--set KEY=JSON`` overrides of
the bundle's config (``--set asym_prob=0.5``, ``--set learning_rate=0.001``). It leaves in
``--out`` no more than the device tool brings back (8 files of at most 16 MiB):
``checkpoints-N.tar`` (up to three parts of 15 MiB: the best-validation ``model.pt`` and the epoch
checkpoints, the latest first; ~0.6 MB each, so the oldest are left out past ~70, and the summary
names them), ``curves.json``/``curves.png``,
``train_summary.json`` (epochs, seconds, device, peak GPU memory). Choose among the checkpoints
here with ``checkpoint_rescore`` (docs/training.md), as for a CPU run.

Exit 0 on success, 2 for a bad argument or input, 7 when training stops on an error (out of GPU
memory, say) after its checkpoints so far and the summary (with ``failure``) are written; one line,
``error[N]: ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from aspects.errors import EXIT_PROCESSING, EXIT_USAGE, InputError
from aspects_research.tools import one_line_errors

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "train" / "infarct_seg"
DATALIST = "infarct.json"
SLABS = "tagl_slabs.json"
WHEELS = "wheels"
# What the bundle needs on the GPU host beyond its image (PyTorch, NumPy, SciPy, matplotlib, PyYAML)
WHEEL_PACKAGES = ("monai", "nibabel", "pytorch-ignite")
IMAGE_KEYS = ("image", "contra")
LABEL_KEYS = ("label",)
MIB = 1024 * 1024
# The device tool brings back 8 files of at most 16 MiB: 3 parts, the curves, the summary, the
# script's log, and one left for the same call's gpu_check report.
TAR_PART_MIB, TAR_PARTS = 15.0, 3


def quantise_hu(hu: np.ndarray, step: float, window: Tuple[float, float]) -> np.ndarray:
    """``hu`` clipped to ``window`` as int16 counts of ``step`` HU above its lower end (rounded)."""
    lo, hi = window
    if step <= 0 or (hi - lo) / step > np.iinfo(np.int16).max:
        raise InputError(EXIT_USAGE, f"--step {step}: must be > 0 and give at most 32767 steps over {window} HU")
    return np.rint((np.clip(np.asarray(hu, dtype=np.float64), lo, hi) - lo) / step).astype(np.int16)


def _save_like(ref, dst: Path, data: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> int:
    """``data`` in the geometry (affine, header) of the loaded NIfTI ``ref`` as ``dst``; its size in bytes."""
    import nibabel as nib

    header = ref.header.copy()
    header.set_data_dtype(data.dtype)
    img = nib.Nifti1Image(data, ref.affine, header)
    img.header.set_slope_inter(slope, inter)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(dst))
    return dst.stat().st_size


def _pack_entry(entry: Dict[str, Any], root: Path, out: Path, step: float) -> int:
    """One datalist entry's volumes into ``out`` (same relative paths, so the entry stays valid); their bytes."""
    import nibabel as nib

    from aspects.model_io import HU_WINDOW

    size = 0
    for key in IMAGE_KEYS + LABEL_KEYS:
        if key not in entry:
            continue
        rel = Path(entry[key])
        src, dst = root / rel, out / rel
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(EXIT_USAGE, f"{entry[key]}: pack needs datalist paths inside the dataset folder")
        if not src.is_file():
            raise InputError(EXIT_USAGE, f"{src}: missing (datalist {key})")
        img = nib.load(str(src))
        arr = np.asarray(img.get_fdata(dtype=np.float32))
        if key in IMAGE_KEYS:
            size += _save_like(img, dst, quantise_hu(arr, step, HU_WINDOW), slope=step, inter=HU_WINDOW[0])
        else:
            size += _save_like(img, dst, np.rint(arr).astype(np.uint8))
    return size


def download_wheels(dest: Path) -> int:
    """The bundle's extra packages as Python 3.12 wheels, at the versions installed here."""
    from importlib.metadata import version

    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in WHEEL_PACKAGES]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "py", "--abi", "none", "--platform", "any", "-d", str(dest), *pins]
    if subprocess.run(cmd).returncode != 0:
        raise InputError(EXIT_USAGE, f"pip download of {' '.join(pins)} failed (no index reachable? use --no-wheels)")
    return sum(p.stat().st_size for p in dest.glob("*.whl"))


def pack(dataset: Path, out: Path, max_mib: float = 50.0, step: float = 0.25, wheels: bool = True,
         tagl_slabs: Optional[Sequence[Sequence[int]]] = None) -> Dict[str, Any]:
    """Pack ``dataset``'s infarct datalist into ``out`` within ``max_mib``; a summary dict.
    ``tagl_slabs`` (``[[bg_start, bg_stop], [sg_start, sg_stop]]``): given instead of computed from
    the atlas levels, for a grid that does not span them (the tests' tiny grids)."""
    listing = dataset / DATALIST
    if not listing.is_file():
        raise InputError(EXIT_USAGE, f"{listing}: no infarct datalist (make one with aspects-make-datalist)")
    datalist = json.loads(listing.read_text())
    train, val = datalist.get("training", []), datalist.get("validation", [])
    if not train:
        raise InputError(EXIT_USAGE, f"{listing}: no training studies")
    if out.exists() and any(out.iterdir()):
        raise InputError(EXIT_USAGE, f"{out}: exists and is not empty (pack writes a new folder)")
    if tagl_slabs is None:  # the packed grid is the dataset's
        try:
            bg, sg = _bundle_module("scripts.levels").aligned_slabs(str(listing), str(dataset))
        except ValueError as exc:
            raise InputError(EXIT_USAGE, f"{dataset}: TAGL slabs: {exc} (give them with --tagl-slabs)") from None
    else:
        bg, sg = (list(s) for s in tagl_slabs)
    out.mkdir(parents=True, exist_ok=True)
    budget = int(max_mib * MIB)
    used = download_wheels(out / WHEELS) if wheels else 0
    packed: Dict[str, List[Dict[str, Any]]] = {"training": [], "validation": []}
    for split, entries in (("validation", val), ("training", train)):
        for entry in entries:
            size = _pack_entry(entry, dataset, out, step)
            if used + size > budget:
                for key in IMAGE_KEYS + LABEL_KEYS:  # the study that did not fit goes again
                    if key in entry:
                        (out / entry[key]).unlink(missing_ok=True)
                break
            used += size
            packed[split].append(entry)
    if not packed["training"]:
        raise InputError(EXIT_USAGE, f"--max-mib {max_mib}: not even one training study fits beside the validation set")
    (out / DATALIST).write_text(json.dumps(packed, indent=1))
    (out / SLABS).write_text(json.dumps({"bg": bg, "sg": sg}))
    summary = {"training": len(packed["training"]), "training_left_out": len(train) - len(packed["training"]),
               "validation": len(packed["validation"]), "validation_left_out": len(val) - len(packed["validation"]),
               "contra": "contra" in packed["training"][0], "step_hu": step, "tagl_slabs": [bg, sg],
               "mib": round(used / MIB, 1)}
    (out / "pack.json").write_text(json.dumps(summary, indent=1))
    return summary


def _bundle_module(name: str):
    """A module of the infarct bundle's ``scripts`` package (the bundle folder on the path, as
    ``monai.bundle run`` puts it)."""
    import importlib

    if str(BUNDLE) not in sys.path:
        sys.path.insert(0, str(BUNDLE))
    return importlib.import_module(name)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string: a path, a device name, an expression starting with $


def parse_sets(pairs: Sequence[str]) -> Dict[str, Any]:
    """``KEY=JSON`` pairs as bundle overrides (a value that is not JSON stays a string)."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(EXIT_USAGE, f"--set {pair!r}: expected KEY=VALUE (VALUE as JSON)")
        out[key] = _json_value(value)
    return out


def _newest_first(path: Path) -> Tuple[int, int]:
    """Sort key: the best-validation ``model.pt`` first, then epoch checkpoints from the last."""
    stem = path.stem
    if "=" not in stem:
        return (0, 0)
    try:
        return (1, -int(stem.rsplit("=", 1)[1]))
    except ValueError:
        return (1, 0)


def write_checkpoint_tars(files: Sequence[Path], root: Path, out: Path, part_mib: float = TAR_PART_MIB,
                          max_parts: int = TAR_PARTS) -> Tuple[List[str], List[str]]:
    """``files`` (in order of priority) into ``out/checkpoints-N.tar`` of at most ``part_mib`` each,
    at most ``max_parts`` of them: the device tool brings back 8 files of at most 16 MiB. Returns
    the names kept and the names that did not fit (the oldest epochs, with the default order)."""
    limit = int(part_mib * MIB)
    parts: List[List[Path]] = []
    sizes: List[int] = []
    left_out: List[str] = []
    for f in files:
        size = f.stat().st_size + 1024  # tar header and padding
        i = next((i for i, used in enumerate(sizes) if used + size <= limit), None)
        if i is None and len(parts) < max_parts and size <= limit:
            parts.append([])
            sizes.append(0)
            i = len(parts) - 1
        if i is None:
            left_out.append(str(f.relative_to(root)))
            continue
        parts[i].append(f)
        sizes[i] += size
    kept: List[str] = []
    for n, members in enumerate(parts, 1):
        with tarfile.open(out / f"checkpoints-{n}.tar", "w") as tar:
            for f in members:
                tar.add(f, arcname=str(f.relative_to(root)))
                kept.append(str(f.relative_to(root)))
    return kept, left_out


def run(data: Path, out: Path, minutes: float = 8.0, epochs: int = 400, ckpt_interval: int = 10,
        device: Optional[str] = None, init: Optional[Path] = None, workers: Optional[int] = None,
        sets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train the infarct bundle on the packed ``data``; results into ``out``; a summary dict."""
    from aspects.inference import resolve_device

    listing, slabs_file = data / DATALIST, data / SLABS
    if not listing.is_file() or not slabs_file.is_file():
        raise InputError(EXIT_USAGE, f"{data}: not a packed dataset (no {DATALIST} / {SLABS}; run pack first)")
    if init is not None and not init.is_file():
        raise InputError(EXIT_USAGE, f"--init {init}: not found")
    if minutes <= 0 or epochs < 1 or ckpt_interval < 1:
        raise InputError(EXIT_USAGE, "--minutes must be > 0, --epochs and --ckpt-interval at least 1")
    dev = resolve_device(device)
    import torch

    datalist = json.loads(listing.read_text())
    slabs = json.loads(slabs_file.read_text())
    configs = [str(BUNDLE / "configs" / "train.json")]
    if "contra" in datalist["training"][0]:
        configs.append(str(BUNDLE / "configs" / "contra.json"))
    cpus = os.cpu_count() or 1
    workers = max(0, min(8, cpus - 1)) if workers is None else workers
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    overrides: Dict[str, Any] = {
        "dataset_dir": str(data.resolve()), "output_dir": str(work), "max_epochs": epochs,
        "ckpt_interval": ckpt_interval, "device": f"$torch.device('{dev}')", "num_threads": max(1, cpus),
        "tagl_slabs": [slabs["bg"], slabs["sg"]], "train#dataloader#num_workers": workers,
        "init_ckpt": str(init.resolve()) if init else None,
    }
    overrides.update(sets or {})
    _bundle_module("scripts")  # the bundle folder on the path for the config's scripts.* targets
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=configs, workflow_type="train", **overrides)
    workflow.parser["train#handlers"] = list(workflow.parser["train#handlers"]) + [
        {"_target_": "aspects_research.training_budget.TimeBudget", "minutes": minutes,
         "scheduler": "@lr_scheduler", "fit_after": "@val_interval"}]
    on_cuda = dev.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    start, failure = time.monotonic(), None
    workflow.initialize()
    engine = workflow.parser.get_parsed_content("train#trainer")
    budget = workflow.parser.get_parsed_content("train#handlers")[-1]
    try:
        workflow.run()
        workflow.finalize()
    except Exception as exc:  # e.g. out of GPU memory: keep what the epochs before it wrote
        while exc.__cause__ is not None:  # MONAI wraps it: "Failed to evaluate ConfigExpression ..."
            exc = exc.__cause__  # type: ignore[assignment]
        failure = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]  # one line
    seconds = time.monotonic() - start
    ckpt_dir = work / "models"
    last = ckpt_dir / "epochs" / f"model_epoch={engine.state.epoch}.pt"
    if failure is None and engine.state.epoch > 0 and not last.is_file():  # the last epoch's weights, always
        last.parent.mkdir(parents=True, exist_ok=True)
        torch.save(workflow.parser.get_parsed_content("network").state_dict(), last)
    kept, left_out = write_checkpoint_tars(sorted(ckpt_dir.rglob("*.pt"), key=_newest_first), ckpt_dir, out)
    for name in ("curves.json", "curves.png"):
        if (work / name).is_file():
            shutil.copy2(work / name, out / name)
    summary = {
        "epochs": int(engine.state.epoch), "stopped_by_time_budget": budget.stopped_early,
        "schedule_epochs": budget.fitted_epochs,
        "seconds": round(seconds, 1), "longest_epoch_s": round(max(budget.epoch_seconds, default=0.0), 2),
        "device": torch.cuda.get_device_name(dev) if on_cuda else "cpu", "torch": torch.__version__,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / MIB, 1) if on_cuda else None,
        "training_studies": len(datalist["training"]), "validation_studies": len(datalist.get("validation", [])),
        "configs": [Path(c).name for c in configs], "overrides": {k: v for k, v in overrides.items()
                                                                  if k not in ("dataset_dir", "output_dir")},
        "checkpoints": kept, "checkpoints_left_out": left_out, "failure": failure,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    if failure:
        raise InputError(EXIT_PROCESSING, f"training stopped at epoch {engine.state.epoch}: {failure} "
                                          f"(the checkpoints written before it are in {out})")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_train", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack an aligned infarct datalist for a GPU host (here)")
    p.add_argument("dataset", type=Path, help="folder of aspects-make-datalist (holds infarct.json)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-mib", type=float, default=50.0, help="size budget, wheels included (default 50; the repository travels too, ~11 MiB of the 64)")
    p.add_argument("--step", type=float, default=0.25, help="HU per stored integer step (default 0.25)")
    p.add_argument("--no-wheels", action="store_true", help="do not download the bundle's wheels")
    p.add_argument("--tagl-slabs", type=json.loads, default=None, metavar="JSON",
                   help="[[bg_start, bg_stop], [sg_start, sg_stop]] z planes, instead of the atlas levels")
    r = sub.add_parser("run", help="train the infarct bundle on packed data (on the GPU host)")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the training (default 8)")
    r.add_argument("--epochs", type=int, default=400, help="max epochs (the cosine schedule's length; default 400)")
    r.add_argument("--ckpt-interval", type=int, default=10)
    r.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    r.add_argument("--init", type=Path, default=None, help="starting weights (a state-dict .pt)")
    r.add_argument("--workers", type=int, default=None, help="training data-loader workers (default: CPUs - 1, at most 8)")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=JSON", help="bundle config override")
    args = ap.parse_args(argv)

    def body() -> int:
        if args.cmd == "pack":
            if not args.dataset.is_dir():
                raise InputError(EXIT_USAGE, f"{args.dataset}: not a folder")
            summary = pack(args.dataset, args.out, args.max_mib, args.step, wheels=not args.no_wheels,
                           tagl_slabs=args.tagl_slabs)
        else:
            summary = run(args.data, args.out, args.minutes, args.epochs, args.ckpt_interval, args.device,
                          args.init, args.workers, parse_sets(args.sets))
        print(json.dumps(summary))
        return 0

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
