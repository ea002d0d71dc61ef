# errands — everything starts from a plain python3 (3.11+).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-faults test-soak test-dedup-soak lint typecheck check bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run a real worker against a private Redis and show jobs being enqueued, retried, scheduled, finished.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## The whole test suite against a private Redis server (REDIS_URL overrides).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The fault-injection suite only (kill -9, Redis restarts, proxies).
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults

## The randomized fault soak: 4 workers, seeded SIGKILL/SIGTERM/SIGSTOP, Redis restarts and network
## faults for SOAK_SECONDS (600), then the invariant checker. Replay a seed with SOAK_SEED=N.
test-soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m soak tests/soak

## The dedup soak: 20 enqueuers x 100 keys x every Dedup mode, kill -9 every 15 s, for
## DEDUP_SOAK_SECONDS (600), then its oracle and the invariant checker (tests/dedup/test_soak.py).
test-dedup-soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m soak tests/dedup/test_soak.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Throughput and latency, errands next to arq, SAQ, streaq and taskiq (peers in bench/.venvs).
bench: $(STAMP)
	$(BIN)/python bench/run.py --errands-python $(BIN)/python

docs: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[docs]'
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
