#!/usr/bin/env bash
# Build the MONAI Application Package (MAP) of app.py with `monai-deploy package`.
#
#   tools/package_map.sh [-t TAG] [-s ARTIFACTS_JSON] [--stage DIR] [--stage-only] [-- extra monai-deploy package args]
#
# When the application is a file, the packager copies the file's WHOLE parent folder into the image
# (holoscan-cli 4.2.0 container_builder._copy_application: no ignore list), which in a checkout
# means .venv, test outputs and the spool. So we package from a clean staging folder holding only
# what the app needs: app.py, app.yaml, aspects/, operators/, config/, atlas/ and a runtime
# requirements.txt. --stage-only stops after staging (the tests run the staged app as the MAP would).
# Needs Docker with buildx, network access to nvcr.io and PyPI (docs/deployment.md).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="aspects:latest"
stage="$repo/build/map"
source_json=""
stage_only=0
for cand in "$repo/../shared/data/holoscan-cli-4.2.0/artifacts.json"; do
    [[ -f "$cand" ]] && source_json="$(cd "$(dirname "$cand")" && pwd)/$(basename "$cand")"
done
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -t|--tag) tag="$2"; shift 2 ;;
        -s|--source) source_json="$2"; shift 2 ;;
        --stage) stage="$2"; shift 2 ;;
        --stage-only) stage_only=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error[2]: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$repo"
[[ -f app.py && -f app.yaml ]] || { echo "error[2]: app.py / app.yaml not found in $repo" >&2; exit 2; }
if [[ ! -d atlas ]] || [[ -z "$(ls -A atlas 2>/dev/null)" ]]; then
    echo "error[2]: atlas/ is missing: build it first (make atlas)" >&2; exit 2
fi
models=0  # models/ is absent in a fresh clone until trained models are added
[[ -d models ]] && models=$(find models -mindepth 2 -maxdepth 2 -name '*.ts' | wc -l)
[[ "$models" -gt 0 ]] || echo "warning: no models/<name>/<name>.ts found: the MAP will use the atlas-only path" >&2

echo "staging the application in $stage"
rm -rf "$stage"
mkdir -p "$stage/app"
# Tracked sources only (no __pycache__, outputs or local files), plus the built atlas.
git ls-files -z -- app.py aspects operators config | xargs -0 -I{} cp --parents {} "$stage/app/"
cp -r atlas "$stage/app/atlas"
find "$stage/app" -name '__pycache__' -prune -exec rm -rf {} +
# Runtime requirements: the repo's pins without the development tools.
grep -v -E '^(pytest|holoscan-cli|dcmqi)([=<>~ ]|$)' requirements.txt > "$stage/app/requirements.txt"
cp app.yaml "$stage/app.yaml"
if [[ "$models" -gt 0 ]]; then
    mkdir -p "$stage/models"
    for d in models/*/; do
        name="$(basename "$d")"
        [[ -f "$d/$name.ts" ]] && { mkdir -p "$stage/models/$name"; cp "$d/$name.ts" "$stage/models/$name/"; }
    done
fi
echo "staged: $(du -sh "$stage" | cut -f1) ($(find "$stage" -type f | wc -l) files)"
[[ "$stage_only" == 1 ]] && exit 0

if ! docker buildx version >/dev/null 2>&1; then
    echo "note: 'docker buildx' is not available on this machine: monai-deploy package will write the build" >&2
    echo "      context and then stop at the image build (install Docker with the buildx plugin)." >&2
fi

args=(package "$stage/app/app.py" -c "$stage/app.yaml" -t "$tag" --platform x86_64 -l DEBUG)
[[ -d "$stage/models" ]] && args+=(-m "$stage/models")
[[ -n "$source_json" ]] && args+=(--source "$source_json")
echo "+ monai-deploy ${args[*]} ${extra[*]}"
exec monai-deploy "${args[@]}" "${extra[@]}"
