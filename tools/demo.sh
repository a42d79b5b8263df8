#!/usr/bin/env bash
# Set up everything, make one synthetic acute-stroke study, run the app on it, print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. ./env.sh
demo=demo
rm -rf "$demo/out"
mkdir -p "$demo"
echo "[demo] making a synthetic 5 mm NCCT study with a left MCA infarct in $demo/study"
aspects-make-phantoms --out "$demo/study" --count 1 --seed 7 --kind acute --thickness 5 --side left --hu-drop 8
case_dir=$(find "$demo/study" -mindepth 1 -maxdepth 1 -type d | sort | head -1)
echo "[demo] running: python app.py -i $case_dir/dicom -o $demo/out -m models"
python app.py -i "$case_dir/dicom" -o "$demo/out" -m models
aspects-summary "$demo/out/aspects.json" --truth "$case_dir/truth.json"
echo "[demo] outputs:"; find "$demo/out" -type f | sort | sed 's/^/  /'
