# pbkit: every target sets up what it needs first (see scripts/setup.sh).
.PHONY: setup test test-fast demo bench lint clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	bash scripts/setup.sh

## The whole test suite: unit, harness, and integration tests on the real local Triton.
test: setup
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rfE

## Only the tests that need no server.
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not server"

## Build the example models, serve them on the local Triton and query each one.
demo: setup
	$(PY) scripts/demo.py

## The benchmark suite; writes docs/benchmarks.md.
bench: setup
	$(PY) bench/run.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf model_repository .pytest_cache
