"""Image registration with ANTs (antspyx), images and transforms exchanged as SimpleITK objects.

Two jobs:

* :func:`rigid_affine`: linear stages (rigid, affine; centre-of-mass or given start) of the
  skull-stripped head to the atlas template on the 2 mm aligned grid, at 8, 4 and 2 mm (shrink
  factors 4, 2, 1) with few iterations. Returns one ITK affine transform (fixed points ->
  moving points) held in memory.
* :func:`syn_warp`: deformable SyN (no linear stage: images already affine-aligned) of the
  template to the patient's aligned image; the atlas labels follow with ``genericLabel``.

Every call passes a fixed ``--random-seed`` so the sampled metrics, hence the results, repeat
exactly run to run (with the same thread count). Temporary transform files live in a private
temporary folder removed before returning.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

import numpy as np
import SimpleITK as sitk

from aspects.errors import EXIT_PROCESSING, InputError

log = logging.getLogger(__name__)

# ANTs sums metric values per thread in whatever order ITK's thread pool finishes, so two runs
# on 2 threads differ by ~0.05 mm. One thread makes registration bit-for-bit reproducible (the
# contract); ASPECTS_ANTS_THREADS overrides it. The ANTs library's ITK reads
# ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS on first use (restoring the variable after a registration
# is too late: tested), so it is set when this module is imported, unless already set.
# SimpleITK's own (separate) ITK is pinned to its current thread count first, so that only ANTs
# (and child processes that inherit the environment) run single-threaded.
ANTS_THREADS = os.environ.get("ASPECTS_ANTS_THREADS", "1")
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", ANTS_THREADS)

# The registrations run in a forked child where the platform can fork (see _run_ants);
# ASPECTS_ANTS_FORK=0 runs them in the calling thread.
FORK_ANTS = hasattr(os, "fork") and os.environ.get("ASPECTS_ANTS_FORK", "1") != "0"

# The deformable stage's metric (local cross-correlation, dense) has no thread-order sums in its
# update: its field is the same bit for bit on 1 and 2 threads (tests/test_fast_paths.py; 100 of
# 100 v2 studies, aspects_research.tools.syn_threads, docs/performance.md), so the SyN child runs
# on up to this many threads (ASPECTS_SYN_THREADS overrides; 1 = as before). Mattes MI, the linear
# stages' metric, is not thread-order free: those stay on ANTS_THREADS. The child's ITK reads the
# variable on its first use, so the parent never makes an ANTs object (syn_warp warps in the child).
def _syn_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    value = os.environ.get("ASPECTS_SYN_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else min(2, cores)


SYN_THREADS = _syn_threads()

# Set when a registration child has been forked: the app's head start (aspects.head_start) waits
# for it before importing the libraries the rest of the run needs.
CHILD_STARTED = threading.Event()

# Registration children running and their temporary folders: a run that ends early (an error
# elsewhere, a signal) ends with os._exit while a registration is under way, so neither the
# child's wait nor the folder's removal in the registering thread happens (abandon()).
_LIVE_CHILDREN: Set[int] = set()
_LIVE_FOLDERS: Set[Path] = set()

SEED = 20240917
# Mattes mutual information, 32 bins, regular 15 % sampling: robust to small HU offsets between
# scanners and cheap at these grid sizes.
LINEAR_METRIC = "MI[{f},{m},1,32,Regular,0.15]"


@dataclass(frozen=True)
class Stage:
    """One linear stage: transform kind, iterations per level, shrink factors, smoothing (voxels)."""

    kind: str  # "Rigid" | "Affine"
    iterations: Tuple[int, ...]
    shrink: Tuple[int, ...]
    smooth_vox: Tuple[int, ...]
    step: float = 0.1


# Coarse capture of head position (8, 4 mm on a 2 mm grid), then affine at 8, 4, 2 mm.
COARSE_STAGES = (Stage("Rigid", (80, 40), (4, 2), (2, 1), 0.2), Stage("Affine", (40, 20), (4, 2), (2, 1), 0.1))
FINE_STAGES = (Stage("Affine", (30, 15, 5), (4, 2, 1), (2, 1, 0), 0.1),)
# SyN for the atlas regions: 40 iterations at 4 mm and none at 2 mm (the field is only
# upsampled). On phantoms the 2 mm iterations cost 3-6x the time for no gain in region Dice
# (0.788 with and without); 4 mm fits ventricles, insula and cortex outline of the template to
# the patient without chasing an infarct's hypodensity.
SYN_ITERATIONS = (40, 0)
SYN_SHRINK = (2, 1)
SYN_SMOOTH_VOX = (1, 0)
SYN_PARAMS = "SyN[0.25,3,0]"


class RegistrationError(RuntimeError):
    """ANTs failed; the caller turns it into an InputError with context."""


# antspyx's package __init__ star-imports every subpackage, and with them scikit-learn,
# statsmodels and matplotlib: ~3 s of CPU at every app start on the 2-core machine, on the
# critical path before the first registration. The app uses three subpackages (images, sitk
# conversion, antsRegistration and apply_transforms).
ANTS_SUBPACKAGES = ("core", "utils", "registration")
_ANTS_LOCK = threading.RLock()


def ants_module() -> ModuleType:
    """The ``ants`` module with :data:`ANTS_SUBPACKAGES` imported (0.5 s instead of ~3 s).

    The package is registered without running its ``__init__``; each subpackage's public names
    are copied onto it as ``from .sub import *`` would (their functions look each other up as
    ``ants.<name>`` at call time). The first access to any other name runs the real
    ``__init__`` in the same module object (PEP 562 ``__getattr__``), so ``import ants`` elsewhere
    in the process still sees the whole library. Same library code, same results."""
    with _ANTS_LOCK:
        loaded = sys.modules.get("ants")
        if loaded is not None:
            return loaded
        spec = importlib.util.find_spec("ants")
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError("No module named 'ants' (pip install antspyx)")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["ants"] = mod
        try:
            for name in ANTS_SUBPACKAGES:
                sub = importlib.import_module(f"ants.{name}")
                public = getattr(sub, "__all__", None) or [k for k in vars(sub) if not k.startswith("_")]
                mod.__dict__.update({k: getattr(sub, k) for k in public})
        except BaseException:
            for key in [k for k in sys.modules if k == "ants" or k.startswith("ants.")]:
                del sys.modules[key]
            raise

        def complete(attr: str) -> Any:
            with _ANTS_LOCK:
                if mod.__dict__.pop("__getattr__", None) is not None:
                    spec.loader.exec_module(mod)  # type: ignore[union-attr]
            try:
                return mod.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module 'ants' has no attribute {attr!r}") from None

        mod.__dict__["__getattr__"] = complete
        return mod


def _ants_image(img: sitk.Image):
    ants = ants_module()
    return ants.from_sitk(sitk.Cast(img, sitk.sitkFloat32))


def _run_ants(build: Callable[[], Sequence[str]], threads: Optional[int] = None,
              then: Optional[Callable[[], None]] = None) -> None:
    """``antsRegistration`` with the arguments ``build()`` returns (its transforms go to files
    named in them), then ``then()``, all in one process: ``build`` makes the ANTs images the
    arguments point to there, so that a forked child is the first user of the ANTs library's ITK
    and reads its thread count (``threads``; None: ANTS_THREADS) from the environment.

    antspyx holds the GIL for the whole registration, which stopped every other Python thread
    of the app: the region warp and the infarct model, meant to run beside the asymmetry
    baseline's SyN, waited for it (the LNCC fit took 26 s of wall time for 3 s of CPU beside a
    SyN, 2026-12-02). On POSIX the registration therefore runs in a forked child (same memory
    image: the images passed by pointer are there, the same code on one thread gives the same
    numbers) while this thread waits without the GIL."""
    ants_module()
    from ants.internal import get_lib_fn, process_arguments

    run = get_lib_fn("antsRegistration")

    def job() -> int:
        code = int(run(process_arguments(list(build()))))
        if code == 0 and then is not None:
            then()
        return code

    code = _in_child(job, threads) if FORK_ANTS else job()
    if code != 0:
        raise RegistrationError(f"antsRegistration exited with {code}")


# A child that uses no CPU for this long is stuck, and is killed and forked again (at most
# CHILD_TRIES times in all): fork copies every lock of the parent in whatever state another thread
# held it, and once in ~70 runs on a loaded 2-core host (session 44, 2026-12-07) the mirror SyN's
# child waited on such a lock with its threads for 11 minutes, and the app with it. A working
# registration uses CPU all the time, however slow the host.
STALL_S = float(os.environ.get("ASPECTS_CHILD_STALL_S", "30"))
CHILD_TRIES = 3


def _cpu_ticks(pid: int) -> Optional[int]:
    """CPU time (clock ticks, user + system, all threads) of process ``pid`` so far, from Linux's
    /proc; None where that cannot be read (then a child is waited for without a stall check)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime: the stat fields 14 and 15
    except (OSError, IndexError, ValueError):
        return None


def _wait_child(pid: int) -> Optional[int]:
    """The wait status of child ``pid``; None when it used no CPU for STALL_S (it is killed)."""
    import signal

    last, since, delay = _cpu_ticks(pid), time.monotonic(), 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(delay)
        delay = min(0.02, 2 * delay)  # a fast child is seen at once, a long one within 20 ms
        ticks = _cpu_ticks(pid)
        if ticks is None or ticks != last:
            last, since = ticks, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None


def _in_child(job: Callable[[], int], threads: Optional[int] = None) -> int:
    """Exit status of ``job()`` run in a forked child (a crash or signal there: non-zero);
    ``threads``: ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS there (None: inherited). A child that
    stalls (:data:`STALL_S`) is run again; after CHILD_TRIES stalls the study fails
    (:class:`aspects.errors.InputError`, exit 7: processing failed)."""
    die_with_parent = _parent_death_signal()  # looked up here: the child only calls it
    for attempt in range(1, CHILD_TRIES + 1):
        pid = os.fork()
        if pid == 0:  # the child: only this thread exists; no Python clean-up, no atexit handlers
            code = 1
            try:
                if die_with_parent is not None:
                    die_with_parent(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
                if threads is not None:  # read by the ANTs library's ITK on its first use, in this child
                    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
                code = int(job())
            finally:
                os._exit(0 if code == 0 else (code & 0xFF) or 1)
        _LIVE_CHILDREN.add(pid)
        CHILD_STARTED.set()
        try:
            status = _wait_child(pid)
        finally:
            _LIVE_CHILDREN.discard(pid)
        if status is not None:
            return os.waitstatus_to_exitcode(status)
        log.warning("the registration's process used no CPU for %.0f s (stuck; try %d of %d): killed%s", STALL_S,
                    attempt, CHILD_TRIES, ", run again" if attempt < CHILD_TRIES else "")
    raise InputError(EXIT_PROCESSING, f"the registration's process was stuck {CHILD_TRIES} times (no CPU for "
                                      f"{STALL_S:.0f} s each time)")


def _temporary_folder(prefix: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    _LIVE_FOLDERS.add(tmp)
    return tmp


def _remove(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    _LIVE_FOLDERS.discard(tmp)


def abandon() -> None:
    """Stop the registrations under way (SIGKILL to their children) and remove their temporary
    folders, for a process about to end without returning from them (app.py's early exits)."""
    import signal

    for pid in list(_LIVE_CHILDREN):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for tmp in list(_LIVE_FOLDERS):
        _remove(tmp)


def _parent_death_signal() -> Optional[Callable[[int, int], int]]:
    """Linux ``prctl``: the child sets PR_SET_PDEATHSIG so that it gets SIGKILL when the app
    process ends (an interrupted run leaves no registration running on its own). Resolved in the
    parent: other threads may be importing (loading libraries) while the child starts, and the
    child must not need the dynamic loader's lock (fork copies it in whatever state it was)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _join(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def rigid_affine(fixed: sitk.Image, moving: sitk.Image, stages: Sequence[Stage] = COARSE_STAGES + FINE_STAGES,
                 initial: Optional[sitk.Transform] = None, fixed_mask: Optional[sitk.Image] = None,
                 seed: int = SEED) -> sitk.AffineTransform:
    """Affine transform mapping points of ``fixed`` space to ``moving`` space.

    ``sitk.Resample(moving, fixed, tx)`` brings ``moving`` onto the fixed grid. ``initial`` (same
    direction) starts the search, else the centres of mass are aligned; ``fixed_mask``
    (non-zero = used) limits the metric to a region of the fixed image.
    """
    ants_module()
    from ants.internal import get_pointer_string

    tmp = _temporary_folder("aspects_reg_")
    keep: List[Any] = []  # the ANTs images the arguments point to, alive until the run ends

    def build() -> List[str]:
        f, m = _ants_image(fixed), _ants_image(moving)
        keep.extend((f, m))
        fs, ms = get_pointer_string(f), get_pointer_string(m)
        if initial is not None:
            init = str(tmp / "init.mat")
            sitk.WriteTransform(sitk.AffineTransform(initial), init)
        else:
            init = f"[{fs},{ms},1]"
        args = ["--dimensionality", "3", "--float", "1", "--collapse-output-transforms", "1",
                "--output", str(tmp / "lin"), "--interpolation", "Linear", "--use-histogram-matching", "0",
                "--winsorize-image-intensities", "[0.005,0.995]", "--initial-moving-transform", init]
        for st in stages:
            args += ["--transform", f"{st.kind}[{st.step}]", "--metric", LINEAR_METRIC.format(f=fs, m=ms),
                     "--convergence", f"[{_join(st.iterations)},1e-6,10]",
                     "--shrink-factors", _join(st.shrink), "--smoothing-sigmas", _join(st.smooth_vox) + "vox"]
        if fixed_mask is not None:
            fm = _ants_image(sitk.Cast(fixed_mask != 0, sitk.sitkFloat32))
            keep.append(fm)
            args += ["--masks", f"[{get_pointer_string(fm)},NA]"]
        return args + ["--random-seed", str(seed)]

    try:
        _run_ants(build)
        mats = sorted(tmp.glob("lin*GenericAffine.mat"))
        if len(mats) != 1:
            raise RegistrationError(f"expected one affine transform, found {len(mats)}")
        return _as_affine(sitk.ReadTransform(str(mats[0])))
    finally:
        _remove(tmp)


def _as_affine(tx: sitk.Transform) -> sitk.AffineTransform:
    """ANTs writes ``AffineTransform_float_3_3``; SimpleITK may wrap it in a one-element composite."""
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() != 1:
            raise RegistrationError("unexpected composite linear transform")
        tx = comp.GetNthTransform(0)
    if tx.GetName() != "AffineTransform":
        raise RegistrationError(f"unexpected linear transform type {tx.GetName()}")
    return sitk.AffineTransform(tx)


def syn_warp(fixed: sitk.Image, moving: sitk.Image, images: Sequence[sitk.Image], label: Sequence[bool],
             iterations: Sequence[int] = SYN_ITERATIONS, shrink: Sequence[int] = SYN_SHRINK,
             smooth_vox: Sequence[int] = SYN_SMOOTH_VOX, metric: str = "MI[{f},{m},1,32]",
             params: str = SYN_PARAMS, seed: int = SEED, threads: Optional[int] = None) -> List[sitk.Image]:
    """Deformably register ``moving`` to ``fixed`` (same physical space, identity start) and
    return ``images`` (defined in ``moving``'s space) resampled onto ``fixed``'s grid:
    ``genericLabel`` interpolation where ``label`` is true, linear otherwise. ``threads``: the
    registration's (None: ANTS_THREADS; only a thread-order-free metric such as CC gives the same
    field on any count)."""
    ants = ants_module()
    from ants.internal import get_pointer_string

    tmp = _temporary_folder("aspects_syn_")
    keep: List[Any] = []  # the ANTs images the arguments point to; keep[0] is the grid of the warps

    def build() -> List[str]:
        f, m = _ants_image(fixed), _ants_image(moving)
        keep.extend((f, m))
        fs, ms = get_pointer_string(f), get_pointer_string(m)
        return ["--dimensionality", "3", "--float", "1", "--collapse-output-transforms", "1",
                "--output", str(tmp / "syn"), "--interpolation", "Linear", "--use-histogram-matching", "0",
                "--initial-moving-transform", "Identity",
                "--transform", params, "--metric", metric.format(f=fs, m=ms),
                "--convergence", f"[{_join(iterations)},1e-7,8]",
                "--shrink-factors", _join(shrink), "--smoothing-sigmas", _join(smooth_vox) + "vox",
                "--random-seed", str(seed)]

    def warp_images() -> None:  # in the registration's process (see SYN_THREADS)
        warps = [w for w in sorted(tmp.glob("syn*[0-9]Warp.nii.gz")) if "Inverse" not in w.name]
        if len(warps) != 1:
            return  # no result files: the caller says so
        for k, (img, is_label) in enumerate(zip(images, label)):
            warped = ants.apply_transforms(fixed=keep[0], moving=_ants_image(img), transformlist=[str(warps[0])],
                                           interpolator="genericLabel" if is_label else "linear")
            sitk.WriteImage(sitk.Cast(ants.to_sitk(warped), sitk.sitkUInt8 if is_label else sitk.sitkFloat32),
                            str(tmp / f"warped{k}.mha"), False)

    try:
        _run_ants(build, threads, warp_images)
        out = []
        for k in range(len(images)):
            path = tmp / f"warped{k}.mha"
            if not path.is_file():
                raise RegistrationError("expected one warp field from the deformable registration, found none")
            res = sitk.ReadImage(str(path))
            res.CopyInformation(fixed)
            out.append(res)
        return out
    finally:
        _remove(tmp)


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised cross-correlation of two arrays inside a boolean mask (0 when undefined)."""
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    if x.size < 2:
        return 0.0
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0
