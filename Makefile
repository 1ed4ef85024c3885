# equiseg: two commands on a fresh machine.
#   make run   - set up .venv and run the main job (the retraining pipeline, locally, smoke profile)
#   make test  - set up .venv, lint, and run the test suite
#   make images - Docker engine (installed/started if missing) + the CPU, GPU and MLflow images (`--runner docker`)
# Every install passes -c constraints.txt; the dev venv gets every extra ([all,dev]).
# A stamp keyed on pyproject.toml + constraints.txt avoids reinstalls.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.equiseg-installed
PROFILE ?= smoke
MLFLOW_PORT ?= 5000
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export DVC_NO_ANALYTICS := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
# OpenMP threads sleep instead of spinning while they wait: on a shared 2-core machine spinning threads steal the
# core the work needs (docs/pipeline.md has the measurement).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help setup browser images mlflow-server run test test-slow test-postgres lint typecheck bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade "pip>=24" -c constraints.txt
	$(BIN)/python -m pip install -c constraints.txt -e ".[all,dev]"
	$(BIN)/python -m pip check
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install equiseg[all,dev] with the pinned constraints (only when they changed)

run: setup ## run the main job: the whole retraining pipeline locally (PROFILE=smoke)
	$(BIN)/equiseg pipeline run --profile $(PROFILE)

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy over the library
	$(BIN)/mypy

test: setup lint ## lint, then the default test suite (not slow)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

browser: ## Debian's chromium, which the report tests open the reports in (apt-get; needs root)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

images: setup ## Docker engine (apt + dockerd if missing), local base if no registry, CPU/GPU/MLflow images
	$(BIN)/python -m pipelines.containers images

mlflow-server: setup ## run the MLflow image on PostgreSQL (127.0.0.1:5432) with proxied artifacts, port MLFLOW_PORT
	$(BIN)/python -m pipelines.containers mlflow-server --port $(MLFLOW_PORT)

test-slow: setup browser images ## the slow tests only (CI runs these too; the Docker pipeline test needs the images)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup ## run the benchmarks in bench/ (prints ratios against a baseline measured in the same run)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[bench]"  # SMP's Segformer, the step baseline
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: ## remove run outputs (keeps .venv)
	rm -rf runs local_outputs .pytest_cache .ruff_cache .mypy_cache
