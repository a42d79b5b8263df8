"""A warm server: one :class:`aspects.pipeline.Pipeline` (atlas, its aligned template, the models
and the imported libraries) kept between studies, so that each study costs only its own work.

    python -m aspects.serve -m MODELS -o OUT_ROOT STUDY_DIR [STUDY_DIR ...]   # batch: OUT_ROOT/<study folder name>/
    python -m aspects.serve -m MODELS --stdio                                  # the listener's warm worker (app.warm)

Batch: one line per study (its exit code as the app's, the ASPECTS or the error line); exit 0
when every study gave a result, else the first failing study's code. ``--stdio``: one JSON
request per line on stdin (``{"input": DIR, "output": DIR}``), one JSON reply per line on
stdout (``{"exit_code": N, "error": LINE or null, "seconds": S}``); the log goes to stderr and
each study's log to its output folder (app.log), as ``python app.py`` writes them. Output
folders follow :mod:`aspects.run_folder` (error.json on bad input, lock, partial folder).
Between studies the cached GPU memory and the allocator's free heap are released (the weights
stay loaded; :mod:`aspects.memory`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Dict, Iterable, Optional, Sequence, Tuple

from aspects.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, InputError
from aspects.inference import release_device_memory
from aspects.memory import no_numpy_hugepages, release_heap
from aspects.pipeline import Pipeline, PathLike
from aspects.warmup import warm_up, warm_up_writers

log = logging.getLogger(__name__)


def warm_pipeline(models_dir: Optional[PathLike] = None, atlas_dir: Optional[PathLike] = None,
                  device: Optional[str] = None) -> Pipeline:
    """A Pipeline with everything a study does not change loaded now: the atlas and its
    aligned-grid template, ANTs, highdicom's standard tables and the models' weights on their device (kept between studies)."""
    pipeline = Pipeline(models_dir, atlas_dir, device, keep_models_loaded=True)
    warm_up(pipeline.atlas)
    warm_up_writers()
    for model in (pipeline.models.infarct, pipeline.models.regions):
        if model is not None:
            model.load()
    return pipeline


def serve_one(pipeline: Pipeline, input_dir: PathLike, output_dir: PathLike,
              trim_heap: bool = True) -> Tuple[int, Optional[str], Dict]:
    """One study into ``output_dir``: (exit code as the app's, its one-line error or None,
    aspects.json or {}). Never raises for a study's failure; the device's cached memory and (unless
    ``trim_heap`` is False: only garbage collection, to measure what the trim saves) the allocator's
    free heap are released afterwards either way."""
    try:
        return EXIT_OK, None, pipeline.run(input_dir, output_dir)
    except InputError as exc:
        return exc.code, exc.one_line(), {}
    except Exception as exc:  # a bug on one study must not stop the server (traceback in the log)
        log.exception("internal error on %s", input_dir)
        return EXIT_INTERNAL, f"error[{EXIT_INTERNAL}]: internal error: {type(exc).__name__}: {exc}", {}
    finally:
        release_heap(trim=trim_heap)  # the study's arrays back to the system before the next study's peak
        release_device_memory(pipeline.device)


def serve_batch(pipeline: Pipeline, studies: Sequence[Path], out_root: Path) -> int:
    """Each study folder into ``out_root/<its name>``; 0 when all gave a result, else the first
    failure's code."""
    first_failure = EXIT_OK
    for k, study in enumerate(studies, 1):
        t0 = time.perf_counter()
        code, line, result = serve_one(pipeline, study, out_root / study.name)
        what = f"ASPECTS {result.get('aspects')}" if code == EXIT_OK else line
        print(f"[{k}/{len(studies)}] {study.name}: exit {code} in {time.perf_counter() - t0:.1f} s: {what}", flush=True)
        if code != EXIT_OK and first_failure == EXIT_OK:
            first_failure = code
    return first_failure


def serve_stdio(pipeline: Pipeline, requests: Iterable[str], replies: IO[str]) -> None:
    """The JSON-lines protocol of ``--stdio`` (module docstring), until the requests end."""
    for raw in requests:
        if not raw.strip():
            continue
        t0 = time.perf_counter()
        try:
            req = json.loads(raw)
            code, line, _ = serve_one(pipeline, Path(req["input"]), Path(req["output"]))
        except (ValueError, KeyError, TypeError) as exc:
            code, line = EXIT_USAGE, f"error[{EXIT_USAGE}]: bad request {raw.strip()[:200]!r}: {exc}"
        replies.write(json.dumps({"exit_code": code, "error": line, "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
        replies.flush()


def _reply_channel() -> IO[str]:
    """stdout for the replies only: the process's fd 1 then points at stderr, so that no library's
    print can corrupt the protocol."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return replies


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aspects.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", type=Path, nargs="*", help="study folders (batch)")
    ap.add_argument("-o", "--output", type=Path, help="batch: results go to OUTPUT/<study folder name>/")
    ap.add_argument("-m", "--models", type=Path, default=None, help="models folder (MODELS/<name>/<name>.ts)")
    ap.add_argument("--stdio", action="store_true", help="serve JSON-line requests on stdin (the listener)")
    args = ap.parse_args(argv)
    no_numpy_hugepages()  # as app.py does (aspects/memory.py)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.stdio == bool(args.studies):
            raise InputError(EXIT_USAGE, "give either study folders (batch, with -o) or --stdio")
        if args.studies and args.output is None:
            raise InputError(EXIT_USAGE, "batch mode needs -o OUTPUT_ROOT")
        missing = [str(s) for s in args.studies if not s.is_dir()]
        if missing:
            raise InputError(EXIT_USAGE, f"study folder(s) not found: {' '.join(missing)}")
        replies = _reply_channel() if args.stdio else sys.stdout
        t0 = time.perf_counter()
        pipeline = warm_pipeline(args.models)
        log.info("warm in %.1f s (device %s)", time.perf_counter() - t0, pipeline.device)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    if args.stdio:
        serve_stdio(pipeline, sys.stdin, replies)
        return EXIT_OK
    return serve_batch(pipeline, args.studies, args.output)


if __name__ == "__main__":
    sys.exit(main())
