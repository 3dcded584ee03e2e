# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
LINT_STAMP := $(VENV)/.installed-lint
# The Step Functions export is checked by the asl-validator npm package, installed into build/node.
NODE_DIR := build/node
NODE_STAMP := $(NODE_DIR)/.installed-asl-validator
# mypy cannot follow setuptools' package-dir mapping (cvm -> src), so it checks `cvm` through a link.
TYPECHECK_ROOT := build/typecheck

.PHONY: run test test-slow test-all lint install install-test shell bench bench-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

$(LINT_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $@ $(TEST_STAMP) $(STAMP)

install: $(STAMP)

$(NODE_STAMP):
	mkdir -p $(NODE_DIR)
	npm install --prefix $(NODE_DIR) --no-audit --no-fund --silent asl-validator@4
	touch $@

install-test: $(TEST_STAMP) $(NODE_STAMP)

## Decide for every sample customer with the embedded rules selector (no key, no network).
run: $(STAMP)
	CVM_SELECTOR=rules $(BIN)/cvm_processor_cli --all_customers --data-dir data/sample

## A shell with the CVM commands on PATH (cvm, cvm_processor_cli, ...); `exit` leaves it.
shell: $(STAMP)
	@echo "CVM commands are on PATH in this shell (.venv/bin); type exit to leave."
	@VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(BIN):$$PATH $${SHELL:-/bin/bash}

## Install the test extras and run the suite in parallel, all but the tests marked slow (under 4 minutes on 2 cores).
# Four workers even on two cores: many tests wait on a CLI subprocess, so two workers leave cores idle
# (measured on 2 cores: -n 2 took 4m22s, -n 4 3m40s).
TEST_WORKERS ?= 4
test: $(TEST_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

## The tests marked slow (@pytest.mark.slow: the longest CLI scenarios, multi-process races, 200k-customer runs);
## .ci/run runs them after `make test`, so CI runs every test.
test-slow: $(TEST_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m slow

## Every test, in one run.
test-all: $(TEST_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

## ruff over the code and tests, mypy over the package.
lint: $(LINT_STAMP)
	$(BIN)/ruff check src tests bench
	mkdir -p $(TYPECHECK_ROOT) && ln -sfn ../../src $(TYPECHECK_ROOT)/cvm
	cd $(TYPECHECK_ROOT) && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml -p cvm

bench: $(TEST_STAMP)
	$(BIN)/python bench/bench_pipeline.py --customers 1000
	$(BIN)/python bench/bench_triggers.py --customers 10000
	$(BIN)/python bench/bench_llm.py --customers 320 --latency 0.2 --concurrency 16

## The scale targets of the batch path and the optimiser (a few minutes, ~3 GB of memory).
bench-scale: $(TEST_STAMP)
	$(BIN)/python bench/bench_batch.py --sizes 10000,100000,1000000
	$(BIN)/python bench/bench_optimizer.py

clean:
	rm -rf $(VENV) build output/*.json state/*.sqlite3* logs/*.log*
