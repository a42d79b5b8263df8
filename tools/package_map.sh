#!/usr/bin/env bash
# Build the MONAI Application Package (MAP) of app.py with `monai-deploy package`.
#
#   tools/package_map.sh [-t TAG] [-s ARTIFACTS_JSON] [--stage DIR] [--stage-only] [--base-image REF]
#                        [--cpu [--rebuild-base] [--mirror URL] [--pip-index-url URL] [--ca-bundle FILE]
#                         [--wheel FILE]...] [-- extra monai-deploy package args]
#
# Default: the packager's base, NVIDIA's CUDA runtime image from nvcr.io (needs nvcr.io, Docker Hub
# for the buildx builder image, and PyPI). --base-image REF: any other base, e.g. your registry's
# copy of that image. --cpu: a CPU base built here from Debian packages by tools/map/build_cpu_base.sh
# (its options pass through; reused from the registry unless --rebuild-base), for build machines
# that reach only Debian and PyPI mirrors; builds with the local Docker daemon (no builder image).
#
# When the application is a file, the packager copies the file's WHOLE parent folder into the image
# (holoscan-cli 4.2.0 container_builder._copy_application: no ignore list), which in a checkout
# means .venv, test outputs and the spool. So we package from a clean staging folder holding only
# what the app needs: app.py, app.yaml, aspects/, operators/, config/, atlas/ and a runtime
# requirements.txt (the research package aspects_research/ and its dependencies stay out). --stage-only stops after staging (the tests run the staged app as the MAP would).
# The packager runs through tools/map/package.py, which makes the image's entrypoint exit with the
# app's exit code (and, with --cpu, adapts the Dockerfile to the CPU base). docs/deployment.md.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="aspects:latest"
stage="$repo/build/map"
source_json=""
stage_only=0
base_image=""
cpu=0
rebuild_base=0
base_args=()
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
        --base-image) base_image="$2"; shift 2 ;;
        --cpu) cpu=1; shift ;;
        --rebuild-base) rebuild_base=1; shift ;;
        --mirror|--pip-index-url|--ca-bundle|--wheel) base_args+=("$1" "$2"); shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "error[2]: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ "$cpu" == 0 ]] && [[ ${#base_args[@]} -gt 0 || "$rebuild_base" == 1 ]]; then
    echo "error[2]: --rebuild-base, --mirror, --pip-index-url, --ca-bundle and --wheel go with --cpu" >&2; exit 2
fi

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
# Runtime requirements: exactly the packages pyproject.toml names as the app's dependencies
# ([project] dependencies: no research, listener or test tools), with their pins from requirements.txt.
# The pip CUDA runtime is not among them: it is here only for holoscan's libcudart beside the CPU torch
# of this machine; the CUDA base image has libcudart, the CUDA build of torch pins its own
# nvidia-cuda-runtime (13.0.x, a conflict with ours), and the CPU base (tools/map/build_cpu_base.sh)
# installs ours.
python "$repo/tools/map/runtime_requirements.py" pyproject.toml requirements.txt > "$stage/app/requirements.txt"
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
wrapper=()
if [[ "$cpu" == 1 ]]; then
    base_image="${base_image:-127.0.0.1:5000/aspects-cpu-base:bookworm}"
    if [[ "$rebuild_base" == 1 ]] || ! docker pull -q "$base_image" >/dev/null 2>&1; then
        bash "$repo/tools/map/build_cpu_base.sh" --tag "$base_image" "${base_args[@]}"
    else
        echo "using the CPU base $base_image from its registry (--rebuild-base builds it again)"
    fi
    # The packager uses the buildx builder 'holoscan_app_builder' if one exists, else creates one
    # that pulls moby/buildkit from Docker Hub. A docker context of that name is a builder with
    # the 'docker' driver: the local daemon, nothing to pull.
    if ! docker buildx inspect holoscan_app_builder >/dev/null 2>&1; then
        endpoint="$(docker context inspect -f '{{.Endpoints.docker.Host}}')"
        docker context create holoscan_app_builder --docker "host=$endpoint" >/dev/null
    fi
    wrapper=(--cpu-base)
fi
[[ -n "$base_image" ]] && args+=(--base-image "$base_image")
# A builder that is a docker context: buildx uses it only as the current context, and its
# 'docker' driver cannot export the packager's build cache (the packager's default).
if docker buildx inspect holoscan_app_builder 2>/dev/null | grep -qE '^Driver:[[:space:]]+docker$'; then
    export DOCKER_CONTEXT=holoscan_app_builder
    args+=(--no-cache)
fi
echo "+ monai-deploy ${args[*]} ${extra[*]}"
# One more try after a failed build: the image's pip steps fail now and then with nothing changed
# (docs/deployment.md: a PyPI layer once, the SDK's `pip install` step once, each built at the next try).
package() { python "$repo/tools/map/package.py" "${wrapper[@]}" -- "${args[@]}" "${extra[@]}"; }
package || { echo "the packager failed; building once more (docs/deployment.md)" >&2; package; }
# The packager names the image <name>-<platform>-<gpu>-<arch>:<tag>; tag it as asked as well.
name="$tag"; version=latest
[[ "${tag##*/}" == *:* ]] && { name="${tag%:*}"; version="${tag##*:}"; }
built="$name-x64-workstation-dgpu-linux-amd64:$version"
docker image inspect "$built" >/dev/null 2>&1 || { echo "error[1]: the packager reported success but $built is not in docker" >&2; exit 1; }
docker tag "$built" "$tag"
echo "built $tag (= $built): $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')"
