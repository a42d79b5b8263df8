"""A PYTHONPATH folder that gives a subprocess the device pool's GPU host's imports, on this machine.

That host has PyTorch, NumPy, SciPy and matplotlib but none of the imaging stack, and MONAI only as
carried wheels (without the Deploy SDK, which here lives inside the ``monai`` package). The folder
holds a ``monai`` package of links to this environment's, without ``monai/deploy``, and a
``sitecustomize`` that makes SimpleITK, ANTs, pydicom, highdicom, pynetdicom and Holoscan
unimportable and, with ``ASPECTS_FAKE_CUDA=1``, also pretends to be a one-GPU host
(``tests/fake_cuda``), so a tool meant for that host proves here that it needs nothing more.
"""

from __future__ import annotations

from pathlib import Path

NOT_ON_GPU_HOST = ("SimpleITK", "ants", "pydicom", "highdicom", "pynetdicom", "holoscan")
FAKE_CUDA = Path(__file__).resolve().parents[1] / "fake_cuda" / "sitecustomize.py"

_BLOCKER = f'''
import sys


class _NotOnGpuHost:
    """Import finder: these packages are not on the GPU host."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_ON_GPU_HOST!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU host)")
        return None


sys.meta_path.insert(0, _NotOnGpuHost())
exec(compile(open({str(FAKE_CUDA)!r}).read(), {str(FAKE_CUDA)!r}, "exec"))
'''


def gpu_host_site(folder: Path) -> Path:
    """Write the folder (see the module docstring) and return it."""
    import monai

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_BLOCKER)
    shadow = folder / "monai"
    shadow.mkdir(exist_ok=True)
    for entry in Path(monai.__file__).parent.iterdir():
        if entry.name != "deploy" and not (shadow / entry.name).exists():
            (shadow / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return folder
