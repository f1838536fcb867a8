PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# two installs in one .venv: what running relay needs (make install, make run), and the dev extra on top
# (tests, linters, the bench); each stamp is redone when pyproject.toml changes
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev run test lint format typecheck bench chaos faults failover cluster cluster-reshard fuzz cluster-harness all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/relay dev

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check relay workers tests
	$(BIN)/ruff format --check relay workers tests
	# who may import whom: the contracts in pyproject.toml ([tool.importlinter]), CONTRIBUTING's table
	$(BIN)/lint-imports --no-cache --no-logo

format: $(DEV_STAMP)
	$(BIN)/ruff format relay workers tests
	$(BIN)/ruff check --fix relay workers tests

bench: $(DEV_STAMP)
	$(BIN)/python -m tests.bench $(BENCH)

chaos: $(DEV_STAMP)
	$(BIN)/python -m tests.chaos

# issue 32's faults, each with the audit table of make chaos (tests/fault_runs.py; FAULTS=name... for some)
faults: $(DEV_STAMP)
	$(BIN)/python -m tests.fault_runs $(FAULTS)

failover: $(DEV_STAMP)
	$(BIN)/python -m tests.failover

# make failover's audit on a Redis Cluster (3 primaries + 3 replicas, tests/cluster_failover.py): a primary SIGKILLed
# mid-run, for RELAY_REDIS_MIN_REPLICAS=0 and =1; cluster-reshard moves a third of the slots while jobs run instead
cluster: $(DEV_STAMP)
	$(BIN)/python -m tests.cluster_failover

cluster-reshard: $(DEV_STAMP)
	$(BIN)/python -m tests.cluster_failover --reshard

# the worker-side fuzz (tests/test_worker_fuzz.py) with a longer budget than make test's 15 examples (~2 min)
fuzz: $(DEV_STAMP)
	RELAY_FUZZ_EXAMPLES=$${RELAY_FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest -q tests/test_worker_fuzz.py --timeout 900

# the loopback Redis Cluster (tests/cluster.py): its timings on this machine, then every harness and cluster client
# test (--slow: 3+3, primaries SIGKILLed)
cluster-harness: $(DEV_STAMP)
	$(BIN)/python -m tests.cluster --runs 5 --both
	$(BIN)/python -m pytest tests/test_cluster_harness.py tests/test_cluster_client.py tests/test_cluster_pipelines.py --slow

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

all: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
