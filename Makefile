# Every target sets up .venv on first use (Python 3.10, pinned by constraints.txt) and reuses it after.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON310 := $(shell command -v python3.10 2>/dev/null || ls $$HOME/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | tail -1)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: run test test-fast lint bench setup setup-system clean

# No Python 3.10 here (most machines have 3.11-3.13; TFX 1.16 needs 3.10): a uv-managed one.
UV := $(shell command -v uv 2>/dev/null || ls $$HOME/.local/bin/uv 2>/dev/null)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { \
	  py="$(PYTHON310)"; \
	  if [ -z "$$py" ]; then \
	    echo "Python 3.10 not found; trying a uv-managed one (uv from PyPI, then 'uv python install 3.10')" >&2; \
	    uv="$(UV)"; \
	    if [ -z "$$uv" ] && python3 -m pip install -q --user uv >&2; then uv="$$HOME/.local/bin/uv"; fi; \
	    if [ -n "$$uv" ] && "$$uv" python install 3.10 >&2; then py=$$("$$uv" python find 3.10); fi; \
	  fi; \
	  test -n "$$py" || { echo "Python 3.10 not found and uv could not provide one: install it (e.g. 'pyenv install 3.10' or 'uv python install 3.10') and retry" >&2; exit 2; }; \
	  "$$py" -m venv $(VENV); \
	}
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)  ## set up, then run the pipeline on the embedded default data
	$(PY) -m pipeline.local_runner $(ARGS)

# The Debian packages the tests' real parts need (system-packages.txt, the one list): installed
# when run as root with apt-get, otherwise each missing part is named and its tests skip.
setup-system:
	@python3 tests/system_parts.py install

test: $(STAMP) setup-system  ## set up, then lint and run the whole test suite
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the quick subset: no TFX pipeline runs, no browser
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/pipeline_bench.py --before
	$(PY) benchmarks/small_data_bench.py --repeats 3
	$(PY) benchmarks/registry_bench.py
	$(PY) benchmarks/serving_bench.py
	$(PY) benchmarks/serving_bench.py --capture
	$(PY) benchmarks/serving_memory_bench.py
	$(PY) benchmarks/warmup_bench.py
	$(PY) benchmarks/monitor_bench.py
	$(PY) benchmarks/grpc_ceiling_bench.py
	$(PY) benchmarks/ui_bench.py
	$(PY) benchmarks/object_storage_bench.py

clean:
	rm -rf runs serving_model/* data/digits
