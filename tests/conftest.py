"""Shared pytest set-up: the repo root on sys.path and a helper that runs the app as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_app(input_dir: Path, output_dir: Path, models_dir: Path | None = None, *, use_env: bool = False,
            extra_env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run app.py in a fresh process: with -i/-o/-m, or (use_env) as the MAP entrypoint does."""
    env = dict(os.environ)
    env.update(extra_env or {})
    models_dir = models_dir or (ROOT / "models")
    if use_env:
        env.update(HOLOSCAN_INPUT_PATH=str(input_dir), HOLOSCAN_OUTPUT_PATH=str(output_dir),
                   HOLOSCAN_MODEL_PATH=str(models_dir))
        cmd = [sys.executable, str(ROOT / "app.py")]
    else:
        cmd = [sys.executable, str(ROOT / "app.py"), "-i", str(input_dir), "-o", str(output_dir), "-m", str(models_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))


@pytest.fixture(scope="session")
def app_runner():
    return run_app
