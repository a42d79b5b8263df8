"""App start-up: the MONAI Deploy SDK without MONAI core's eager imports (docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imported by `import monai` (MONAI core's load_submodules), never needed by the app.
MONAI_CORE = ("monai.utils", "monai.transforms", "monai.networks", "monai.data", "monai.bundle", "ignite",
              "monai.deploy.operators")


def _python(code: str) -> str:
    """stdout of ``code`` in a fresh interpreter (this process has imported too much to tell)."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _imported(stderr: str) -> set:
    """Module names from `python -X importtime` output."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_the_app_process_imports_the_sdk_but_not_monai_core():
    r = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "app.py"), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "usage: app.py" in r.stdout, r.stderr[-2000:]
    mods = _imported(r.stderr)
    assert {"monai.deploy.core", "holoscan.core"} <= mods
    assert not [m for m in mods if m.startswith(MONAI_CORE)], sorted(m for m in mods if m.startswith(MONAI_CORE))


def test_monai_core_after_the_sdk_namespace_fails_with_a_clear_error():
    code = ("from operators.sdk_import import import_sdk_without_monai_core as f\n"
            "assert f() and not f()\n"
            "import monai.deploy.core, sys\n"
            "assert 'monai.utils' not in sys.modules\n"
            "try:\n"
            "    from monai import __version__\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "MONAI core is not loaded in this process" in r.stdout


def test_without_the_namespace_monai_core_still_imports_in_other_processes():
    """Library code and tests that import MONAI core are unaffected (the namespace is the app's only)."""
    r = subprocess.run([sys.executable, "-c", "import operators.sdk_import, monai; print(monai.__version__)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip()[0].isdigit(), r.stderr


def test_registrations_import_ants_without_its_statistics_and_plotting_stack():
    # aspects.registration.ants_module: antspyx's own __init__ pulls scikit-learn, statsmodels and
    # matplotlib (~3 s at every app start); the app's registrations must work without them, and
    # any other use of `ants` in the process must still find the whole library.
    code = ("import sys\n"
            "import numpy as np, SimpleITK as sitk\n"
            "from aspects.registration import ants_module, rigid_affine\n"
            "ants_module()\n"
            "a = np.zeros((32, 32, 32), np.float32); a[8:24, 10:22, 6:26] = 100\n"
            "tx = rigid_affine(sitk.GetImageFromArray(a), sitk.GetImageFromArray(np.roll(a, 2, 0)))\n"
            "print('shift', round(tx.GetParameters()[-1], 1))\n"
            "print('heavy', sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'statsmodels', 'matplotlib'}))\n"
            "import ants\n"
            "print('full', bool(ants.__version__), callable(ants.image_read), 'sklearn' in sys.modules)\n")
    out = _python(code)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["shift"] == "2.0", out  # the 2-voxel shift along z found
    assert lines["heavy"] == "[]", out
    assert lines["full"] == "True True True", out


def test_the_writer_warm_up_reads_highdicoms_standard_tables():
    code = ("from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map\n"
            "from aspects.warmup import warm_up_writers\n"
            "before = get_iod_module_map.cache_info().currsize + get_module_attribute_map.cache_info().currsize\n"
            "warm_up_writers()\n"
            "after = get_iod_module_map.cache_info().currsize + get_module_attribute_map.cache_info().currsize\n"
            "print(before, after)\n")
    assert _python(code).split() == ["0", "2"]
