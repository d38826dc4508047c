# Two commands do everything: `make figures` and `make test` (both create/refresh .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export JAX_ENABLE_X64 := 1

.PHONY: all venv test test-fast figures quick-figures lint format bench docs clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# Only create or refresh .venv (every other target does this first).
venv: $(STAMP)

# Two test processes per machine at most (pytest-xdist), whole test files to one process so a
# module's shared fixture (a study's QUICK run) is computed once.
PYTEST := $(BIN)/python -m pytest -n auto --maxprocesses 2 --dist loadfile --durations=15

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

figures: $(STAMP)
	$(BIN)/python -m studies run all

quick-figures: $(STAMP)
	$(BIN)/python -m studies run all --quick

# The documentation site (mkdocs + mkdocstrings), built strictly: a broken reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Benchmarks (a fresh process per measurement; ~5-10 min on 2 cores): writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check analysis studies tests benchmarks examples
	$(BIN)/ruff format --check analysis studies tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format analysis studies tests benchmarks examples
	$(BIN)/ruff check --fix analysis studies tests benchmarks examples

clean:
	rm -rf $(VENV) results .pytest_cache
