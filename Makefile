# The README's commands. `make setup demo` on a fresh machine; `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
ENV := . ./env.sh &&

.PHONY: setup demo lint test test-fast atlas map map-test map-setup
setup:
	bash tools/setup.sh

atlas:
	$(ENV) aspects-build-atlas --real ../shared/data/real --out atlas

demo:
	bash tools/demo.sh

# ruff (style and bugs) and mypy (types of the shipped code and the listener), seconds when cached.
lint:
	$(ENV) ruff check . && mypy

# The full suite (README, CI): lint first, then every test tier.
test: lint
	$(ENV) python -m pytest -q tests

# The pure tests only (no slow, e2e or external ones): about a minute on two cores.
test-fast:
	$(ENV) python -m pytest -q -m "not slow and not e2e and not external" tests

# The MAP image (docs/deployment.md). Default: NVIDIA's CUDA base from nvcr.io (needs nvcr.io, Docker
# Hub and PyPI). MAP_CPU=1: a CPU base built here from Debian packages (needs a Debian mirror, a
# PyPI index and a registry on 127.0.0.1: make map-setup). Site settings go on the command line.
# the image is tagged with the app's version (aspects/__init__.py, the one place it is written)
APP_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' aspects/__init__.py)
MAP_TAG ?= aspects:$(APP_VERSION)
MAP_CPU ?=
MAP_BASE_IMAGE ?=
MAP_DEBIAN_MIRROR ?=
MAP_PIP_INDEX_URL ?=
MAP_CA_BUNDLE ?=
MAP_WHEELS ?=
MAP_REBUILD_BASE ?=
map:
	$(ENV) bash tools/package_map.sh -t $(MAP_TAG) $(if $(MAP_BASE_IMAGE),--base-image $(MAP_BASE_IMAGE)) \
	  $(if $(MAP_CPU),--cpu $(if $(MAP_REBUILD_BASE),--rebuild-base) $(if $(MAP_DEBIAN_MIRROR),--mirror $(MAP_DEBIAN_MIRROR)) \
	    $(if $(MAP_PIP_INDEX_URL),--pip-index-url $(MAP_PIP_INDEX_URL)) $(if $(MAP_CA_BUNDLE),--ca-bundle $(MAP_CA_BUNDLE)) \
	    $(foreach w,$(MAP_WHEELS),--wheel $(w)))

map-test:
	$(ENV) ASPECTS_MAP_TEST=1 MAP_TAG=$(MAP_TAG) python -m pytest -q -s -rs tests/test_map_image.py

map-setup:
	bash tools/map/docker_up.sh --install
