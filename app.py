"""ASPECTS: acute infarct and ASPECTS regions from a head NCCT study, as a MONAI Deploy application.

    python app.py -i INPUT_DICOM_DIR -o OUTPUT_DIR -m MODELS_DIR

or, as a MAP runs it, with HOLOSCAN_INPUT_PATH / HOLOSCAN_OUTPUT_PATH / HOLOSCAN_MODEL_PATH set
and no arguments. Exit codes and the one-line error format: aspects/errors.py.
"""

from __future__ import annotations

import signal

from aspects.memory import no_numpy_hugepages

# Before NumPy is imported (it reads its setting then): no synchronous memory compaction under
# the study's large arrays (aspects/memory.py; a thin study 25 % faster on the 2-core host).
_SMALL_PAGES = no_numpy_hugepages()
_HEAD_START = None  # aspects.head_start.HeadStart: the study's first stages, started before the imports below
if __name__ == "__main__":
    # Before any import starts a thread: SIGINT/SIGTERM stay blocked in every thread and one
    # watcher thread takes them with sigwait (see main()). Holoscan would otherwise catch them
    # itself, stop the graph quietly and let the run end with exit 0 and no result.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from operators.sdk_import import import_sdk_without_monai_core

    import_sdk_without_monai_core()  # MONAI Deploy SDK only: MONAI core's eager imports cost ~1/3 of a run
    import sys

    from aspects.head_start import start_from_argv

    # Scan, select, load and preprocess the study in a thread now; the SDK, torch and highdicom
    # imports below run while its first registration works in a forked child (aspects/head_start.py).
    _HEAD_START = start_from_argv(sys.argv)

import argparse  # noqa: E402
import atexit  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional, cast  # noqa: E402

# Holoscan's own C++ log would print operator tracebacks on bad input; our log says what happened.
os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "OFF")

from monai.deploy.conditions import CountCondition  # noqa: E402
from holoscan.schedulers import EventBasedScheduler  # noqa: E402
from monai.deploy.core import Application  # noqa: E402
from monai.deploy.core.runtime_env import RuntimeEnv  # noqa: E402

from aspects import __version__, timings  # noqa: E402
from aspects.assess import ScoringSettings  # noqa: E402
from aspects.errors import EXIT_INTERNAL, EXIT_OK, InputError  # noqa: E402
from aspects.app_logging import LOG_FORMAT, console_policy, hold_log_handlers, last_console_line  # noqa: E402
from aspects.atlas import LazyAtlas  # noqa: E402
from aspects.head_start import EarlyLog, HeadStart  # noqa: E402
from aspects.run_folder import OutputFolder  # noqa: E402
from aspects.segmentation import SegmentationModels  # noqa: E402
from aspects.warmup import warm_up_in_background, warm_up_writers_in_background  # noqa: E402
from operators.aspects_scorer import AspectsScorerOperator  # noqa: E402
from operators.dicom_loader import DICOMLoaderOperator  # noqa: E402
from operators.image_findings import ImageFindingsOperator  # noqa: E402
from operators.infarct_segmenter import InfarctSegmenterOperator  # noqa: E402
from operators.preprocess import PreprocessOperator  # noqa: E402
from operators.region_segmenter import RegionSegmenterOperator  # noqa: E402
from operators.series_selector import NCCTSeriesSelectorOperator  # noqa: E402
from operators.series_to_volume import SeriesToVolumeOperator  # noqa: E402
from operators.writers import (  # noqa: E402
    JSONWriterOperator,
    KeyImageWriterOperator,
    KOSWriterOperator,
    NiftiWriterOperator,
    SegWriterOperator,
    SRWriterOperator,
)

log = logging.getLogger("aspects.app")
file_log = logging.getLogger("aspects.app.outcome")  # DEBUG: app.log only (the console shows INFO and up)
file_log.setLevel(logging.DEBUG)


class AspectsApp(Application):
    """Head NCCT study in; infarct, ASPECTS regions, score and DICOM SEG/SR/key images out."""

    name = "aspects"
    description = "Acute infarct and ASPECTS from non-contrast head CT (not for diagnostic use)"
    version = __version__

    # Set by main() before run(): where the writers put the results (a partial folder inside the
    # output folder, moved into place at the end) and the installed models on their device.
    results_dir: Optional[Path] = None
    models: Optional[SegmentationModels] = None
    atlas: Optional[LazyAtlas] = None
    head_start: Optional[HeadStart] = None  # the front stages already under way (aspects/head_start.py)

    def compose(self):
        # The SDK's app context would insist that -m exists; the app also runs without models.
        input_dir, output_dir, models_dir = _paths(self.argv)
        _log_to_file(output_dir)
        if not models_dir.is_dir():
            log.warning("models folder %s not found: using the atlas and asymmetry fallbacks", models_dir)
        models = self.models or SegmentationModels.from_folder(models_dir)
        output_dir = self.results_dir or output_dir
        atlas = self.atlas or LazyAtlas()  # $ASPECTS_ATLAS_DIR or atlas/ next to app.py; read once, shared

        # One study per run: the loader (the graph's root) fires once.
        head = self.head_start
        loader = DICOMLoaderOperator(self, CountCondition(self, 1), input_folder=input_dir, head_start=head,
                                     name="dicom_loader")
        selector = NCCTSeriesSelectorOperator(self, head_start=head, name="series_selector")
        to_volume = SeriesToVolumeOperator(self, head_start=head, name="series_to_volume")
        preprocess = PreprocessOperator(self, atlas=atlas, head_start=head, name="preprocess")
        infarct = InfarctSegmenterOperator(self, model=models.infarct, name="infarct_segmenter")
        regions = RegionSegmenterOperator(self, atlas=atlas, model=models.regions, name="region_segmenter")
        findings = ImageFindingsOperator(self, name="image_findings")
        scorer = AspectsScorerOperator(self, settings=ScoringSettings(), name="aspects_scorer")
        seg = SegWriterOperator(self, output_folder=output_dir, name="seg_writer")
        sr = SRWriterOperator(self, output_folder=output_dir, reference_seg=True, name="sr_writer")
        keys = KeyImageWriterOperator(self, output_folder=output_dir, name="key_image_writer")
        kos = KOSWriterOperator(self, output_folder=output_dir, name="kos_writer")
        nifti = NiftiWriterOperator(self, output_folder=output_dir, name="nifti_writer")
        result_json = JSONWriterOperator(self, output_folder=output_dir, wait_for=JSONWriterOperator.PORTS,
                                         name="json_writer")

        # DICOM loader -> series selector -> series to volume -> preprocessing
        self.add_flow(loader, selector, {(loader.OUT_SCAN, selector.IN_SCAN)})
        self.add_flow(selector, to_volume, {(selector.OUT_SELECTION, to_volume.IN_SELECTION)})
        self.add_flow(to_volume, preprocess, {(to_volume.OUT_SERIES, preprocess.IN_SERIES)})
        # -> infarct segmenter, in parallel with region segmenter -> image findings -> ASPECTS scorer
        self.add_flow(preprocess, infarct, {(preprocess.OUT_PREPROCESSED, infarct.IN_PREPROCESSED)})
        self.add_flow(preprocess, regions, {(preprocess.OUT_PREPROCESSED, regions.IN_PREPROCESSED)})
        self.add_flow(preprocess, findings, {(preprocess.OUT_PREPROCESSED, findings.IN_PREPROCESSED)})
        self.add_flow(regions, findings, {(regions.OUT_REGIONS, findings.IN_REGIONS)})
        self.add_flow(to_volume, scorer, {(to_volume.OUT_SERIES, scorer.IN_SERIES)})
        self.add_flow(preprocess, scorer, {(preprocess.OUT_PREPROCESSED, scorer.IN_PREPROCESSED)})
        self.add_flow(infarct, scorer, {(infarct.OUT_INFARCT, scorer.IN_INFARCT)})
        self.add_flow(regions, scorer, {(regions.OUT_REGIONS, scorer.IN_REGIONS)})
        self.add_flow(findings, scorer, {(findings.OUT_FINDINGS, scorer.IN_FINDINGS)})
        # -> writers: SEG -> SR (references the SEG), key images, NIfTI -> KOS -> aspects.json last
        for writer in (seg, sr, keys, kos, nifti, result_json):
            self.add_flow(scorer, writer, {(scorer.OUT_SCORED, writer.IN_SCORED)})
        self.add_flow(seg, sr, {(seg.OUT_SEG, sr.IN_SEG)})
        self.add_flow(seg, kos, {(seg.OUT_SEG, kos.IN_SEG)})
        self.add_flow(sr, kos, {(sr.OUT_SR, kos.IN_SR)})
        self.add_flow(keys, kos, {(keys.OUT_KEY_IMAGES, kos.IN_KEY_IMAGES)})
        self.add_flow(seg, result_json, {(seg.OUT_SEG, result_json.IN_SEG)})
        self.add_flow(sr, result_json, {(sr.OUT_SR, result_json.IN_SR)})
        self.add_flow(keys, result_json, {(keys.OUT_KEY_IMAGES, result_json.IN_KEY_IMAGES)})
        self.add_flow(kos, result_json, {(kos.OUT_KOS, result_json.IN_KOS)})
        self.add_flow(nifti, result_json, {(nifti.OUT_NIFTI, result_json.IN_NIFTI)})


def _log_to_file(output_dir: Path, fresh: bool = False) -> None:
    """Full log in OUTPUT/app.log (the SDK's logging set-up replaces handlers, so it is added
    again in compose()); ``fresh`` starts a new file for this run."""
    root = logging.getLogger()
    target = str((output_dir / "app.log").resolve())
    if not any(getattr(h, "baseFilename", None) == target for h in root.handlers):
        handler = logging.FileHandler(target, mode="w" if fresh else "a")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.DEBUG)
        root.addHandler(handler)
        for early in [h for h in root.handlers if isinstance(h, EarlyLog)]:
            early.hand_over(handler)  # the head start's records, before this run's own


def _paths(argv) -> tuple[Path, Path, Path]:
    """The SDK's -i/-o/-m (else HOLOSCAN_* env), read without its side effects (it creates -o)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", help="input DICOM folder (one study); default $HOLOSCAN_INPUT_PATH")
    p.add_argument("-o", "--output", help="output folder; default $HOLOSCAN_OUTPUT_PATH")
    p.add_argument("-m", "--model", help="models folder (models/<name>/<name>.ts); default $HOLOSCAN_MODEL_PATH")
    p.add_argument("-l", "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"])
    p.add_argument("-w", "--workdir")
    p.add_argument("-t", "--triton-server-netloc")
    args = p.parse_args(argv[1:])
    env = RuntimeEnv()
    return Path(args.input or env.input), Path(args.output or env.output), Path(args.model or env.model)


class _Run:
    """What the signal watcher needs to end a run cleanly from its own thread."""

    def __init__(self) -> None:
        self.folder: Optional[OutputFolder] = None  # set once this run holds the output folder
        self.commit_lock = threading.Lock()
        self.committed = False


def _watch_signals(run: _Run) -> None:
    """Wait for SIGINT/SIGTERM; end the run at once with 130/143 and an error.json that says so.

    Results still being written are discarded (they live in the partial folder); a run that has
    already moved its results into place finishes normally.
    """
    sig = signal.sigwait({signal.SIGINT, signal.SIGTERM})
    code, name = 128 + sig, signal.Signals(sig).name
    with run.commit_lock:
        if run.committed:
            return
        line = f"error[{code}]: interrupted by {name}; the run was stopped and no result was written"
        hold_log_handlers()  # then this thread's records are the last ones
        log.error("interrupted by %s: partial results discarded", name)
        if run.folder is not None:
            run.folder.fail(code, line, interrupted=True, signal=name)
        _abandon_registrations()
        last_console_line(line)
        os._exit(code)


def main(head_start: Optional[HeadStart] = None) -> int:
    """One run of the app; ``head_start``: the study's first stages already started on the input
    folder (``app.py`` as ``__main__``: aspects/head_start.py)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    run = _Run()
    threading.Thread(target=_watch_signals, args=(run,), name="signals", daemon=True).start()
    argv = list(sys.argv)
    t0 = time.perf_counter()
    input_dir, output_dir, models_dir = _paths(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    console_policy()  # per-file lines and tracebacks go to app.log only
    folder = OutputFolder(output_dir)
    warm: Optional[threading.Thread] = None
    try:
        folder.open(input_dir)
        run.folder = folder
        _log_to_file(output_dir, fresh=True)
        file_log.debug("NumPy transparent huge pages: %s ($NUMPY_MADVISE_HUGEPAGE=%s)",
                       "not advised" if _SMALL_PAGES else "advised", os.environ.get("NUMPY_MADVISE_HUGEPAGE"))
        if head_start is None:
            timings.reset()  # else reset before the head start's stages (their timings are this run's)
        models = SegmentationModels.from_folder(models_dir)  # the device, resolved once (a bad request: exit 2)
        if head_start is not None:
            atlas, warm = cast(LazyAtlas, head_start.atlas), head_start.warm_up
        else:  # ANTs import, atlas and its aligned template: beside the DICOM reading
            atlas = LazyAtlas()
            warm = warm_up_in_background(atlas)
        app = AspectsApp()  # reads -i/-o/-m from sys.argv, else HOLOSCAN_* env
        console_policy()
        app.results_dir, app.models, app.atlas = folder.start_partial(), models, atlas
        app.head_start = head_start
        # Two workers: the infarct and region segmenters are independent and each runs ANTs on one
        # thread (for deterministic results), so together they use both cores of a small server.
        # Queue stealing: an operator made ready on the busy worker's queue (the image findings,
        # queued behind the infarct segmenter) runs on the idle one instead of waiting for it.
        app.scheduler(EventBasedScheduler(app, name="scheduler", worker_thread_number=2, stop_on_deadlock=True,
                                          enable_queue_stealing=True))
        warm_up_writers_in_background()  # while the registrations run, not after the infarct stage
        app.run()
        if not (folder.partial / "aspects.json").is_file():
            raise RuntimeError("the pipeline stopped before writing aspects.json (see the operator errors above)")
        with run.commit_lock:
            folder.commit()
            run.committed = True
    except InputError as exc:
        return _fail(exc.code, exc.one_line(), folder, head_start)
    except Exception as exc:  # a bug: full traceback to the log file, one line on the console
        if isinstance(exc.__cause__, InputError):
            return _fail(exc.__cause__.code, exc.__cause__.one_line(), folder, head_start)
        if folder.locked:  # the traceback goes to app.log only
            with open(output_dir / "app.log", "a") as f:
                f.write("internal error:\n" + traceback.format_exc())
        line = f"error[{EXIT_INTERNAL}]: internal error: {type(exc).__name__}: {exc} (details in {output_dir / 'app.log'})"
        return _fail(EXIT_INTERNAL, " ".join(line.split()), folder, head_start)
    finally:
        # Never leave a thread importing modules while the interpreter exits. With a head start
        # (app.py as __main__) the process ends with os._exit, no teardown: a failed run does not
        # wait for the stage under way (its registration child gets SIGKILL with the process).
        if warm is not None and head_start is None:
            warm.join()
    log.info("done in %.1f s; results in %s", time.perf_counter() - t0, output_dir)
    return EXIT_OK


def _fail(code: int, line: str, folder: OutputFolder, head_start: Optional[HeadStart] = None) -> int:
    """The one line on stderr, last; error.json only in a folder this run holds (never the
    input's, never another run's). A head start still at work (the run failed outside its stages:
    a locked output folder, output inside the input, a bad -m) is stopped and logs nothing more."""
    file_log.debug("%s", line)
    if head_start is not None and head_start.thread is not None and head_start.thread.is_alive():
        head_start.cancel(wait=False)
        logging.disable(logging.CRITICAL)  # the process ends right after (app.py: _exit_now)
    print(line, file=sys.stderr)
    folder.fail(code, line)
    return code


def _exit_now(code: int) -> None:
    """End the process once the run is over: the atexit handlers (logging's flush among them),
    then ``os._exit``, without the interpreter's teardown of every imported module and library
    (torch, ITK, Holoscan), which took 3.6 s after the last output on the loaded 2-core machine
    (2026-12-02, docs/performance.md). Every output is written and closed by then."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _abandon_registrations()
    os._exit(code)


def _abandon_registrations() -> None:
    """A run that ends while a registration works (it failed elsewhere, or a signal) leaves no
    ANTs child and no temporary folder behind (aspects.registration.abandon); a finished run has
    none under way."""
    registration = sys.modules.get("aspects.registration")
    if registration is not None:
        registration.abandon()


if __name__ == "__main__":
    _exit_now(main(_HEAD_START))
