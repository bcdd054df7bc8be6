# alcbench: `make benchmark` runs the default suite, `make test` runs the tests.
# Both create the virtual environment (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt
STAMP := $(VENV)/.installed
JOBS ?= 2
OUT ?= results
BENCH_ARGS ?=

.PHONY: venv benchmark test test-all lint type perf report fit clean

venv: $(STAMP)

# torch and torchvision are pinned in the constraints file to the releases this project is
# tested with; pyproject.toml keeps ranges.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --editable '.[dev]'
	touch $(STAMP)

benchmark: venv
	$(BIN)/alcbench suite --out $(OUT) --jobs $(JOBS) $(BENCH_ARGS)

test: venv
	$(BIN)/python -m pytest -q -m "not slow"

test-all: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check benchmark datasets strategies tests
	$(BIN)/ruff format --check benchmark datasets strategies tests

type: venv
	$(BIN)/mypy

perf: venv
	$(BIN)/python -m benchmark.perf.simulator --out $(OUT)/perf
	$(BIN)/python -m benchmark.perf.learners --out $(OUT)/perf

report: venv
	$(BIN)/alcbench report $(OUT)

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache .hypothesis
