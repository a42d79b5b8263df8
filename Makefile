# The README's commands. `make setup demo` on a fresh machine; `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
ENV := . ./env.sh &&

.PHONY: setup demo test test-fast atlas
setup:
	bash tools/setup.sh

atlas:
	$(ENV) python tools/build_atlas.py --real ../shared/data/real --out atlas

demo:
	bash tools/demo.sh

test:
	$(ENV) python -m pytest -q tests
