"""Print the MAP's requirements: the app's dependencies ([project] dependencies of pyproject.toml)
pinned as requirements.txt pins them; a dependency without a pin is an error (the image would get
whatever version is newest on the day it is built).

    python tools/map/runtime_requirements.py pyproject.toml requirements.txt > stage/app/requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Dict, List


def canonical(name: str) -> str:
    """PEP 503 normalised name (``PyYAML`` = ``pyyaml``, ``pylibjpeg_rle`` = ``pylibjpeg-rle``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: str) -> Dict[str, str]:
    """``{canonical name: "name==version"}`` of a requirements file's ``==`` lines."""
    out = {}
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            out[canonical(line.split("==", 1)[0].strip())] = line
    return out


def runtime_requirements(pyproject: str, requirements: str) -> List[str]:
    names = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0] for d in tomllib.loads(pyproject)["project"]["dependencies"]]
    pinned = pins(requirements)
    missing = [n for n in names if canonical(n) not in pinned]
    if missing:
        raise SystemExit(f"error[2]: no '==' pin in requirements.txt for the runtime dependencies {', '.join(missing)}")
    return [pinned[canonical(n)] for n in names]


if __name__ == "__main__":
    print("\n".join(runtime_requirements(Path(sys.argv[1]).read_text(), Path(sys.argv[2]).read_text())))
