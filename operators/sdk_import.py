"""Import the MONAI Deploy SDK without MONAI core's eager package import (app start-up time)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys


def import_sdk_without_monai_core() -> bool:
    """Register ``monai`` as the PEP 420 namespace package it is when only the SDK is installed.

    The MONAI Deploy SDK installs itself as ``monai/deploy`` inside the ``monai`` folder. Without
    MONAI core (the MAP's runtime) ``monai`` is a namespace package and ``import monai.deploy.core``
    costs only the SDK. With MONAI core installed beside it (this venv: the training bundles need
    it), ``monai/__init__.py`` runs first and imports every MONAI submodule (ignite,
    torch.distributed, transforms, ...): a third of a 5 mm run, for nothing the app uses
    (docs/performance.md). This gives the app the same imports in both environments.

    Call it first thing in the app's own process (``app.py`` does, as ``__main__``); it does
    nothing when ``monai`` is already imported. MONAI core is then unavailable in that process: a
    MONAI-core import fails with an ImportError that says so. Returns True when it registered
    the namespace.
    """
    if "monai" in sys.modules:
        return False
    spec = importlib.util.find_spec("monai")
    if spec is None or not spec.submodule_search_locations:
        return False
    namespace = importlib.machinery.ModuleSpec("monai", None, is_package=True)
    namespace.submodule_search_locations = list(spec.submodule_search_locations)
    module = importlib.util.module_from_spec(namespace)

    def _no_core(name: str):  # PEP 562 module __getattr__: `from monai import __version__` in MONAI core
        raise ImportError(f"monai.{name}: MONAI core is not loaded in this process; the ASPECTS app imports only "
                          "the MONAI Deploy SDK (operators/sdk_import.py)")

    module.__dict__["__getattr__"] = _no_core
    sys.modules["monai"] = module
    return True
