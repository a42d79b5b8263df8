#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: Debian tools (DICOM validators, dcmtk, Orthanc),
# the Python venv with the pinned requirements. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs="dicom3tools dcmtk orthanc libgdcm-tools"  # gdcmconv: JPEG 2000 / JPEG-LS test inputs
if ! command -v dciodvfy >/dev/null || ! command -v storescu >/dev/null || ! command -v Orthanc >/dev/null \
   || ! command -v gdcmconv >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] installing Debian packages: $apt_pkgs"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $apt_pkgs >/dev/null
  # Orthanc's package starts a system service where one can; the tests run their own instances.
  $SUDO service orthanc stop >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
echo "[setup] installing Python requirements (pinned, CPU torch)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# The project itself, editable: console scripts (aspects-evaluate, aspects-listener, ...) and the
# packages importable from anywhere; requirements.txt above is the lock, so no dependency resolution.
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
. ./env.sh
python - <<'PY'
import torch, monai, highdicom, SimpleITK, ants, pydicom
from monai.deploy.core import Application  # loads holoscan: needs libcudart from env.sh
print(f"[setup] ok: torch {torch.__version__}, monai {monai.__version__}, highdicom {highdicom.__version__}")
PY
if [ ! -f atlas/aspects_atlas.nii.gz ]; then
  echo "[setup] atlas/ missing: building it from ../shared/data/templates"
  aspects-build-atlas --templates ../shared/data/templates --out atlas
fi
echo "[setup] done. Activate with: . ./env.sh"
