# digitrec: `make run` trains and evaluates the default model; `make test` lints, type-checks and
# runs the test suite.
# Both create .venv and install everything first, so they work on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/default

# A local copy of MNIST beside the checkout (../shared/mnist) is used when present; otherwise
# digitrec looks in $DIGITREC_DATA, then its cache, and downloads what is missing.
SHARED_MNIST := $(abspath ../shared/mnist)
ifneq ($(wildcard $(SHARED_MNIST)/train-images-idx3-ubyte*),)
export DIGITREC_DATA ?= $(SHARED_MNIST)
endif

.PHONY: install run lint test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/pip install -e '.[all]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/digitrec data
	$(BIN)/digitrec train --preset default --out $(RUN_DIR)
	$(BIN)/digitrec evaluate $(RUN_DIR)/model.safetensors --out $(RUN_DIR)/report
	@echo "report: $(RUN_DIR)/report/report.json (confusion.png, misclassified.png beside it; curves in $(RUN_DIR)/curves.png)"

# Lint and types first: they take seconds, the suite minutes. The import contract between the
# layers is a test (tests/test_architecture.py).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .pytest_cache
