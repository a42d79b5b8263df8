"""Running the app on a study: :func:`run_app` starts ``python app.py`` as a user does (the CLI,
exit codes, signals and the MAP entrypoint are tested this way); :func:`run_pipeline` runs the same
stages in-process (:mod:`aspects.pipeline`), which the other end-to-end tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, Optional

from aspects.errors import InputError
from tests.support import REPO


def run_app(input_dir: Path, output_dir: Path, models_dir: Optional[Path] = None, *, use_env: bool = False,
            extra_env: Optional[dict] = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run app.py with -i/-o/-m, or (``use_env``) with HOLOSCAN_* variables as the MAP entrypoint does."""
    env = dict(os.environ)
    env.update(extra_env or {})
    models_dir = models_dir or (REPO / "models")
    if use_env:
        env.update(HOLOSCAN_INPUT_PATH=str(input_dir), HOLOSCAN_OUTPUT_PATH=str(output_dir),
                   HOLOSCAN_MODEL_PATH=str(models_dir))
        cmd = [sys.executable, str(REPO / "app.py")]
    else:
        cmd = [sys.executable, str(REPO / "app.py"), "-i", str(input_dir), "-o", str(output_dir), "-m", str(models_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO))


@dataclass(frozen=True)
class PipelineRun:
    """An in-process run, read like a finished app process: ``returncode`` is the app's exit code,
    ``stderr`` its one-line error (empty on success), ``result`` the aspects.json written."""

    returncode: int
    stderr: str
    result: Optional[Dict[str, Any]]


def run_pipeline(pipeline, input_dir: Path, output_dir: Path) -> PipelineRun:
    """``pipeline.run`` (an :class:`aspects.pipeline.Pipeline`); an input error becomes its exit code."""
    try:
        return PipelineRun(0, "", pipeline.run(input_dir, output_dir))
    except InputError as exc:
        return PipelineRun(exc.code, exc.one_line(), None)
