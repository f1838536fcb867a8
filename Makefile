PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format typecheck bench chaos failover all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/relay dev

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check relay workers tests
	$(BIN)/ruff format --check relay workers tests

format: $(STAMP)
	$(BIN)/ruff format relay workers tests
	$(BIN)/ruff check --fix relay workers tests

bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH)

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

failover: $(STAMP)
	$(BIN)/python -m tests.failover

typecheck: $(STAMP)
	$(BIN)/mypy

all: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
