# `make demo` and `make test` work on a fresh machine: each creates .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu

.PHONY: demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.core-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.core-installed

demo: $(VENV)/.core-installed
	$(VENV)/bin/lateo demo --out demo-output

test: $(VENV)/.test-installed
	$(PY) -m pytest -n 2 --dist loadfile -q

bench: $(VENV)/.test-installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_gmm.py

clean:
	rm -rf $(VENV) .pytest_cache .jax_cache demo-output
