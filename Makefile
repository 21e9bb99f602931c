# Everything a fresh machine needs, from the package registries only.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
ASSAY_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export ASSAY_TEST_POSTGRES_URL

.PHONY: help install test lint format bench demo clean

help:
	@echo "make test     create .venv, install assay with its test extras, lint, run the suite"
	@echo "make lint     ruff check + format check"
	@echo "make format   ruff format + autofix"
	@echo "make bench    run the benchmarks in bench/ (see bench/README.md)"
	@echo "make fuzz     fuzz each harness in bench/fuzz for FUZZ_SECONDS (default 60; crashes in bench/results/fuzz)"
	@echo "make demo     install, then run assay demo (the whole workflow on sample traffic, ~3 min)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,local]'
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_calls.py
	bench/harness/run_assay.sh

demo: install
	$(BIN)/assay demo

.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz: install
	@for harness in bench/fuzz/fuzz_*.py; do \
		echo "== $$harness: $(FUZZ_SECONDS) s"; \
		$(BIN)/python $$harness -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
