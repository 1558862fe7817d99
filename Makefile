# Every target sets up .venv on first use (Python 3.10, pinned by constraints.txt) and reuses it after.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON310 := $(shell command -v python3.10 2>/dev/null || ls $$HOME/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | tail -1)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: run test lint bench setup clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (e.g. 'pyenv install 3.10') and retry" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)  ## set up, then run the pipeline on the embedded default data
	$(PY) -m pipeline.local_runner $(ARGS)

test: $(STAMP)  ## set up, then lint and run the whole test suite
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/pipeline_bench.py --before
	$(PY) benchmarks/small_data_bench.py --repeats 3
	$(PY) benchmarks/registry_bench.py
	$(PY) benchmarks/serving_bench.py

clean:
	rm -rf runs serving_model/* data/digits
