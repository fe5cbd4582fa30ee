# recdistill: every target creates or reuses .venv and installs the pinned stack first.
# The pinned stack is requirements/*.txt; torchrec is installed with --no-deps (its metadata asks
# for the CUDA fbgemm-gpu; docs/stack.md) — that happens here and nowhere else.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench lint format clean

setup: $(STAMP)

# requirements/constraints.txt pins every package to a set tried together here (a newer pyarrow
# needs numpy 2, which Triton's Python backend cannot use): regenerate it with `pip freeze`.
$(STAMP): requirements/base.txt requirements/dev.txt requirements/torchrec.txt requirements/constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -r requirements/base.txt -r requirements/dev.txt 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q --no-deps -c requirements/constraints.txt -r requirements/torchrec.txt 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch, torchrec, fbgemm_gpu, polars, lightgbm, onnxruntime, tritonclient, pytriton"
	bash scripts/install_perf_analyzer.sh $(VENV) || echo "note: perf_analyzer cannot run here; its cross-check is skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recdistill run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	bash benchmarks/run_all.sh

lint: $(STAMP)
	$(BIN)/ruff check recdistill serving data_gen tests benchmarks
	$(BIN)/ruff format --check recdistill serving data_gen tests benchmarks
	$(BIN)/mypy recdistill serving data_gen

format: $(STAMP)
	$(BIN)/ruff check --fix recdistill serving data_gen tests benchmarks
	$(BIN)/ruff format recdistill serving data_gen tests benchmarks

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
