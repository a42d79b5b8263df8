"""Shared fixtures and the test tiers.

Markers (``--strict-markers``: an unknown marker is an error):
    slow      takes more than a few seconds (registration, model inference, training, app runs)
    e2e       runs the whole app or pipeline on a study, or the listener with the app behind it
    external  needs a program or data outside the Python environment (dcmtk, dciodvfy, Orthanc,
              gdcmconv, Docker, jq, ../shared/data)
``make test-fast`` runs the tests with none of them; ``make test`` runs everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support import REPO
from tests.support.phantom_cases import make_case


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder of synthetic studies (each made once, on first use)."""
    root = tmp_path_factory.getbasetemp() / "phantoms"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def phantom_case(phantom_root: Path) -> Callable[..., Path]:
    """``phantom_case(seed, kind="acute", thickness=5.0, **PhantomOptions)`` -> the case folder
    (``dicom/``, ``truth/``, ``truth.json``), made once per session (tests/support/phantom_cases.py)."""

    def make(seed: int, kind: str = "acute", thickness: float = 5.0, **opts: Any) -> Path:
        return make_case(phantom_root, seed, kind=kind, thickness=thickness, **opts)

    return make


@pytest.fixture(scope="session")
def pipeline():
    """One warm in-process pipeline (the repository's models and atlas, loaded once) for the session."""
    from aspects.pipeline import Pipeline

    return Pipeline(models_dir=REPO / "models", keep_models_loaded=True)
