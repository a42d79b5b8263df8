"""Run `monai-deploy package` (holoscan-cli 4.2.0, in this process) with two corrections.

    python tools/map/package.py [--cpu-base] -- <arguments of `monai-deploy package`>

1. Always: the image's ENTRYPOINT (`/var/holoscan/tools`, the packager's templates/tools.sh) runs
   the app and logs "Application exited with N", but its `main` then ends on an `if` whose status
   is 0, so the container exits 0 even when the app failed and an orchestrator (Workflow Manager,
   `docker run`, Kubernetes) records a failed study as done. The copy written into the build
   context gets one line, `return ${exit_code}`, so the container exits with the app's code.
2. With --cpu-base (a base image made by tools/map/build_cpu_base.sh instead of NVIDIA's CUDA
   image): the rendered Dockerfile loses NVIDIA's cuda-keyring step (it downloads from NVIDIA's
   site and only serves the CUDA apt repository, which a CPU base has no use for), and the Ubuntu
   24.04 version pins on the python3 packages (`python3=3.12.3-*` ...), which no Debian release has;
   and the SDK's install step runs `python3 -m pip` (the image's upgraded user-level `pip` script
   ran against Debian's pip module in 2 of 3 builds).

Each correction is an exact text edit that must match where expected; if a packager update changes
the text, this stops with error[1] instead of building an image without the correction.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Tuple

# (what, old text, new text, expected count) on holoscan-cli 4.2.0's rendered files.
ENTRYPOINT_EDITS: List[Tuple[str, str, str, int]] = [
    ("exit with the app's status",
     '                newline\n            fi\n        else\n            fatal "Failed to launch application;',
     '                newline\n            fi\n            return ${exit_code}  # tools/map/package.py: the container exits with the app\'s code\n'
     '        else\n            fatal "Failed to launch application;',
     1),
]
CUDA_KEYRING = (
    "# Update NV GPG repo key\n"
    "# https://developer.nvidia.com/blog/updating-the-cuda-linux-gpg-repository-key/\n"
    "RUN rm -f /etc/apt/sources.list.d/cuda*.list \\\n"
    "    && curl -OL https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/{arch}/cuda-keyring_1.1-1_all.deb \\\n"
    "    && dpkg -i cuda-keyring_1.1-1_all.deb \\\n"
    "    && rm -f cuda-keyring_1.1-1_all.deb \\\n"
    "    && apt-get update\n"
)
CPU_BASE_EDITS: List[Tuple[str, str, str, int]] = [
    ("no NVIDIA cuda-keyring on a CPU base", CUDA_KEYRING.format(arch="x86_64"),
     "# CPU base (tools/map/package.py): the step that fetches NVIDIA's CUDA apt key is removed\n", 1),
    ("no Ubuntu version pin on python3 packages", "=${PYTHON_VERSION} \\", " \\", 4),
    ("no Ubuntu version pin on python3-pip", "=${PYTHON_PIP_VERSION} \\", " \\", 1),
    # The image upgrades pip into the user's site-packages first; the `pip` script that leaves in
    # ~/.local/bin then ran, in 2 of 3 builds of 2026-12-07, against Debian's pip module
    # ("cannot import name 'cli' from 'pip._internal.cli.main'"). `python3 -m pip` takes the module
    # from its own sys.path, so the script and the module cannot disagree.
    ("the SDK installed by the interpreter's own pip", "RUN pip install monai-deploy-app-sdk",
     "RUN python3 -m pip install monai-deploy-app-sdk", 1),
]


class EditError(RuntimeError):
    """The packager's text differs from what a correction expects."""


def apply_edits(text: str, edits: List[Tuple[str, str, str, int]], where: str) -> str:
    """Apply exact replacements, each required to occur exactly its expected number of times."""
    for what, old, new, count in edits:
        found = text.count(old)
        if found != count:
            raise EditError(f"{where}: '{what}': expected {count} occurrence(s) of the packager's text, found {found} "
                            "(holoscan-cli changed? this wrapper is written for 4.2.0)")
        text = text.replace(old, new)
    return text


def install_corrections(cpu_base: bool) -> None:
    """Wrap the packager's builder so that the build context gets the corrected files."""
    from holoscan_cli.packager import container_builder

    builder = container_builder.BuilderBase
    copy_script, get_template = builder._copy_script, builder._get_template

    def _copy_script(self):  # noqa: ANN001, ANN202 (the packager's signature)
        path = Path(copy_script(self))
        path.write_text(apply_edits(path.read_text(), ENTRYPOINT_EDITS, "entrypoint script (tools.sh)"))
        return str(path)

    def _get_template(self, platform_parameters):  # noqa: ANN001, ANN202
        text = get_template(self, platform_parameters)
        return apply_edits(text, CPU_BASE_EDITS, "Dockerfile") if cpu_base else text

    builder._copy_script, builder._get_template = _copy_script, _get_template


def main(argv: List[str]) -> int:
    opts, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    if set(opts) - {"--cpu-base"} or not rest or rest[0] != "package":
        print("error[2]: usage: tools/map/package.py [--cpu-base] -- package <monai-deploy package arguments>",
              file=sys.stderr)
        return 2
    install_corrections(cpu_base="--cpu-base" in opts)
    from holoscan_cli.__main__ import main as holoscan_main

    # The packager picks the SDK (MONAI Deploy) from the program name; it reports its own errors
    # (an EditError included) as "Error packaging application" and exits 1.
    sys.argv = ["monai-deploy", *rest]
    holoscan_main(sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
