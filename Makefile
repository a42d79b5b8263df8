# The README's commands. `make setup demo` on a fresh machine; `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
ENV := . ./env.sh &&

.PHONY: setup demo test test-fast atlas map map-test map-setup
setup:
	bash tools/setup.sh

atlas:
	$(ENV) python -m aspects_research.tools.build_atlas --real ../shared/data/real --out atlas

demo:
	bash tools/demo.sh

test:
	$(ENV) python -m pytest -q tests

# The MAP image (docs/deployment.md). Default: NVIDIA's CUDA base from nvcr.io (needs nvcr.io, Docker
# Hub and PyPI). MAP_CPU=1: a CPU base built here from Debian packages (needs a Debian mirror, a
# PyPI index and a registry on 127.0.0.1: make map-setup). Site settings go on the command line.
MAP_TAG ?= aspects:0.1.0
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
