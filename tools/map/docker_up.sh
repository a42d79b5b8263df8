#!/usr/bin/env bash
# Docker for the CPU MAP build on a bare Debian machine (`make map-setup`): optionally installs
# Debian's Docker, buildx, debootstrap and registry, then starts, if not already answering, the
# Docker daemon and a registry on 127.0.0.1 (the packager always pulls its base image).
#
#   tools/map/docker_up.sh [--install] [--registry-port 5000]
#
# A machine that already runs Docker with buildx needs neither: the registry is still needed for
# `tools/package_map.sh --cpu` (or push the base image to any registry you have and pass --base-image).
# --install runs apt-get (root). Debian 12 has no docker-buildx package: it is then taken from
# Debian 13 (trixie) with an apt pin so that nothing else comes from there.
set -euo pipefail

install=0
port=5000
state="/var/lib/aspects-map"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) install=1; shift ;;
        --registry-port) port="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "error[2]: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$(id -u)" == 0 ]] || { echo "error[2]: needs root (starts dockerd)" >&2; exit 2; }

if [[ "$install" == 1 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io containerd debootstrap docker-registry iptables > /dev/null
    if ! docker buildx version > /dev/null 2>&1; then
        if [[ -z "$(apt-cache policy docker-buildx | awk '/Candidate:/ {print $2}' | grep -v none)" ]]; then
            echo "[docker] docker-buildx: adding Debian trixie, pinned to that package only"
            printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                > /etc/apt/sources.list.d/trixie.sources
            printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie-pin
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends -t trixie docker-buildx > /dev/null
        else
            apt-get install -y -qq --no-install-recommends docker-buildx > /dev/null
        fi
    fi
fi

mkdir -p "$state"
if ! docker info > /dev/null 2>&1; then
    command -v dockerd > /dev/null || { echo "error[2]: dockerd not found (run with --install)" >&2; exit 2; }
    echo "[docker] starting dockerd (log: $state/dockerd.log)"
    nohup dockerd > "$state/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
    docker info > /dev/null 2>&1 || { tail -5 "$state/dockerd.log" >&2; echo "error[1]: dockerd did not start" >&2; exit 1; }
fi
echo "[docker] daemon $(docker version -f '{{.Server.Version}}'), buildx $(docker buildx version 2>/dev/null | awk '{print $2}' || echo missing)"

if ! curl -fsS "http://127.0.0.1:$port/v2/" > /dev/null 2>&1; then
    command -v docker-registry > /dev/null || { echo "error[2]: docker-registry not found (run with --install)" >&2; exit 2; }
    cat > "$state/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    echo "[docker] starting a registry on 127.0.0.1:$port (log: $state/registry.log)"
    nohup docker-registry serve "$state/registry.yml" > "$state/registry.log" 2>&1 &
    for _ in $(seq 30); do curl -fsS "http://127.0.0.1:$port/v2/" > /dev/null 2>&1 && break; sleep 1; done
    curl -fsS "http://127.0.0.1:$port/v2/" > /dev/null || { tail -5 "$state/registry.log" >&2; echo "error[1]: registry did not start" >&2; exit 1; }
fi
echo "[docker] registry on 127.0.0.1:$port answers"
