# alcbench: `make benchmark` brings results/ up to date (runs the cells of the default suite that
# are new or changed), `make reproduce` re-runs them all and compares, `make test` runs the tests.
# Both create the virtual environment (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt
# What is installed in $(VENV): the package with its core dependencies (enough for the default
# suite, which reads the shipped posteriors), then, for the tests, the developer tools and the
# learners extra (PyTorch), added to the same environment.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
JOBS ?= 2
OUT ?= results
BENCH_ARGS ?=
FIT_ARGS ?= --dataset cifar10h
# A benchmark that fits learners (--refit, --active-every B) needs the learners extra.
BENCH_INSTALL := $(if $(filter --refit --active-every --active-every=%,$(BENCH_ARGS)),$(DEV_STAMP),$(STAMP))

.PHONY: venv venv-dev benchmark reproduce screenshots test test-all lint type perf report fit posteriors clean

venv: $(STAMP)

venv-dev: $(DEV_STAMP)

# Versions are pinned in the constraints file (torch and torchvision to the releases this
# project is tested with); pyproject.toml keeps ranges.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --editable .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --editable '.[dev,learners,dask,ray]'
	touch $(DEV_STAMP)

benchmark: $(BENCH_INSTALL)
	$(BIN)/alcbench suite --out $(OUT) --jobs $(JOBS) $(BENCH_ARGS)

# Re-runs every cell of the default suite from scratch in a scratch folder and compares each
# row and curve with the committed results (exit 1, listing the cells, if any differ).
reproduce: $(STAMP)
	$(BIN)/alcbench reproduce $(OUT) --jobs $(JOBS) --no-progress

# Screenshots of the published site at desktop and phone widths (headless Chromium).
screenshots: venv-dev
	ALCBENCH_SITE=$(OUT)/site ALCBENCH_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/test_site.py -k screenshots

test: venv-dev
	$(BIN)/python -m pytest -q -m "not slow"

test-all: venv-dev
	$(BIN)/python -m pytest -q

lint: venv-dev
	$(BIN)/ruff check benchmark datasets strategies tests
	$(BIN)/ruff format --check benchmark datasets strategies tests

type: venv-dev
	$(BIN)/mypy

perf: venv-dev
	$(BIN)/python -m benchmark.perf.simulator --out $(OUT)/perf
	$(BIN)/python -m benchmark.perf.learners --out $(OUT)/perf
	$(BIN)/python -m benchmark.perf.scaling --out $(OUT)/perf

report: venv
	$(BIN)/alcbench report $(OUT)

# Fits a learner into the posterior cache (needs the images): make fit FIT_ARGS='--dataset cifar10h --seeds 0-4'
fit: venv-dev
	$(BIN)/alcbench fit $(FIT_ARGS)

# Fits every learner of the default suite on CIFAR-10H (T=2 and T=10, seeds 0-4) into the
# posteriors shipped in results/posteriors; entries already there are read, not fitted again.
# Needs the CIFAR-10 images (ALCBENCH_DATA, or POSTERIOR_ARGS=--data-root DIR).
# The learners are the suite's (benchmark.run.suite.shipped_learners); SHIPPED_LEARNERS='a b' names others.
SHIPPED_LEARNERS ?=
posteriors: venv-dev
	set -f; learners='$(SHIPPED_LEARNERS)'; [ -n "$$learners" ] || learners=$$($(BIN)/python -c \
	  'from benchmark.run.suite import shipped_learners; print(*shipped_learners("cifar10h"))') || exit 1; \
	for learner in $$learners; do for t in 2 10; do \
	  $(BIN)/alcbench fit --dataset "cifar10h[temperature=$$t]" --learner "$$learner" --seeds 0-4 \
	    --cache $(OUT)/posteriors $(POSTERIOR_ARGS) || exit 1; done; done

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache .hypothesis
