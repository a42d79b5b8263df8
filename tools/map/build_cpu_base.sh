#!/usr/bin/env bash
# Build a CPU base image for the MAP from Debian packages only (no nvcr.io, no Docker Hub) and push
# it to a local registry, for `tools/package_map.sh --cpu`.
#
#   tools/map/build_cpu_base.sh [--tag REF] [--suite bookworm] [--mirror URL] [--pip-index-url URL]
#                               [--ca-bundle FILE] [--wheel FILE]... [--workdir DIR]
#
# The packager always builds with `--pull`, so the base must come from a registry: REF defaults to
# 127.0.0.1:5000/aspects-cpu-base:<suite> (tools/map/docker_up.sh starts that registry).
# What goes in: Debian <suite> (debootstrap, minbase) with python3, pip, venv, curl, jq and
# ca-certificates; --ca-bundle added to the system trust store (for a TLS-inspecting proxy or an
# internal mirror); /etc/pip.conf with that trust store, --pip-index-url if given, and
# break-system-packages (the packager's Dockerfile pip-installs into the user site of Debian's
# Python); the pip CUDA runtime (requirements.txt's pin) in the system site, with LD_LIBRARY_PATH
# pointing at it: holoscan needs libcudart to import, even on a machine without a GPU; every
# --wheel in /opt/wheels, which pip.conf offers as find-links (e.g. a CPU build of torch: the MAP's
# `torch==` pin then takes it, a local version `+cpu` ranking above PyPI's CUDA build).
# Needs root, debootstrap and a Docker daemon. Python version = the suite's (bookworm: 3.11).
set -euo pipefail

suite="bookworm"
mirror="http://deb.debian.org/debian"
tag=""
pip_index=""
ca_bundle=""
wheels=()
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
workdir="$repo/build/cpu-base"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --suite) suite="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        --pip-index-url) pip_index="$2"; shift 2 ;;
        --ca-bundle) ca_bundle="$2"; shift 2 ;;
        --wheel) wheels+=("$2"); shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "error[2]: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
tag="${tag:-127.0.0.1:5000/aspects-cpu-base:$suite}"

[[ "$(id -u)" == 0 ]] || { echo "error[2]: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error[2]: debootstrap not found (apt-get install debootstrap)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "error[2]: no Docker daemon answers (tools/map/docker_up.sh starts one)" >&2; exit 2; }
[[ -z "$ca_bundle" || -f "$ca_bundle" ]] || { echo "error[2]: --ca-bundle $ca_bundle not found" >&2; exit 2; }
for w in "${wheels[@]}"; do
    [[ -f "$w" && "$w" == *.whl ]] || { echo "error[2]: --wheel $w is not a wheel file" >&2; exit 2; }
done

rootfs="$workdir/rootfs"
mkdir -p "$workdir"
cleanup() {
    for m in proc dev; do mountpoint -q "$rootfs/$m" && umount -l "$rootfs/$m"; done
    return 0
}
trap cleanup EXIT
cleanup
rm -rf "$rootfs"
# Commands in the chroot get a clean environment: nothing of this host's pip or proxy settings.
in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"; }

echo "[base] debootstrap $suite from $mirror"
debootstrap --variant=minbase \
    --include=python3,python3-minimal,libpython3-stdlib,python3-pip,python3-venv,ca-certificates,curl,jq \
    "$suite" "$rootfs" "$mirror" > "$workdir/debootstrap.log" 2>&1 \
    || { tail -20 "$workdir/debootstrap.log" >&2; echo "error[1]: debootstrap failed (log: $workdir/debootstrap.log)" >&2; exit 1; }

mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"  # name resolution for pip in the chroot only

if [[ -n "$ca_bundle" ]]; then
    echo "[base] adding $ca_bundle to the trust store"
    cp "$ca_bundle" "$rootfs/usr/local/share/ca-certificates/extra-ca.crt"
    in_root update-ca-certificates > "$workdir/ca.log" 2>&1 \
        || { cat "$workdir/ca.log" >&2; echo "error[1]: update-ca-certificates failed" >&2; exit 1; }
fi
{
    echo "# Written by tools/map/build_cpu_base.sh"
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    echo "break-system-packages = true"
    [[ -n "$pip_index" ]] && echo "index-url = $pip_index"
} > "$rootfs/etc/pip.conf"

# holoscan (imported by the MONAI Deploy SDK) loads libcudart even on a CPU: the pip CUDA runtime at
# the repo's pin, in the system site so that a CUDA build of torch may still bring its own pin.
# Only that: a package in the system site also satisfies the MAP's requirements there, and
# holoscan's .pth hook (wheel-axle) in the user site runs before the system site is on sys.path,
# so its dependencies (filelock) must be installed in the user site, as the Dockerfile does.
cudart_pin="$(grep -E '^nvidia-cuda-runtime==' "$repo/requirements.txt" || echo nvidia-cuda-runtime)"
echo "[base] pip install into the system site: $cudart_pin"
in_root python3 -m pip install --no-cache-dir --no-warn-script-location --no-deps "$cudart_pin" > "$workdir/pip.log" 2>&1 \
    || { tail -20 "$workdir/pip.log" >&2; echo "error[1]: pip install into the base failed (log: $workdir/pip.log)" >&2; exit 1; }
if [[ ${#wheels[@]} -gt 0 ]]; then
    mkdir -p "$rootfs/opt/wheels"
    cp "${wheels[@]}" "$rootfs/opt/wheels/"
    echo "find-links = /opt/wheels" >> "$rootfs/etc/pip.conf"
    echo "[base] offered to pip in /opt/wheels: $(cd "$rootfs/opt/wheels" && ls | tr '\n' ' ')"
fi
pyver="$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
cleanup
# Leave nothing of this machine in the image: apt lists and caches, resolv.conf (Docker writes its own).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/tmp/*
: > "$rootfs/etc/resolv.conf"

echo "[base] importing as $tag (Python $pyver)"
cudart="/usr/local/lib/python$pyver/dist-packages/nvidia/cu13/lib"
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV LD_LIBRARY_PATH=$cudart" \
    --change "LABEL org.opencontainers.image.description=\"CPU base for the ASPECTS MAP: Debian $suite, Python $pyver (tools/map/build_cpu_base.sh)\"" \
    --change 'CMD ["/bin/bash"]' \
    - "$tag" > /dev/null
docker push "$tag" > "$workdir/push.log" 2>&1 \
    || { tail -5 "$workdir/push.log" >&2; echo "error[1]: docker push $tag failed (is the registry up? tools/map/docker_up.sh)" >&2; exit 1; }
echo "[base] pushed $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
rm -rf "$rootfs"
