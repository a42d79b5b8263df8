#!/usr/bin/env bash
# On a GPU host of the device pool: install the wheels packed with the data, show the GPU, train the
# infarct bundle (docs/training.md, "Training on a GPU host"). Device `run` with
# carry ["build/gpu_train"] and timeout_s 600:
#   bash tools/gpu_train_device.sh --minutes 8 [--init build/gpu_train/init.pt] [--set KEY=JSON ...]
# Arguments go to `gpu_train run`; the data is $GPU_TRAIN_DATA (default build/gpu_train), the results
# and train.log go to $OUT (the device tool's folder that comes back).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${GPU_TRAIN_DATA:-build/gpu_train}
out=${OUT:?OUT must name the folder for the results (the device tool sets it)}
mkdir -p "$out"
if compgen -G "$data/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_train_site "$data"/wheels/*.whl
  export PYTHONPATH=/tmp/gpu_train_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/train.log"
fi
python3 -m aspects_research.tools.gpu_train run --data "$data" --out "$out" "$@" 2>&1 | tee -a "$out/train.log"
