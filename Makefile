# `make demo` and `make test` work on a fresh machine: each creates .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu

.PHONY: demo test bench bench-leaspy clean

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

# The Dask tests run in their own process: their in-process LocalCluster runs JAX on worker threads,
# which must not share a process with the rest of the suite.
test: $(VENV)/.test-installed
	$(PY) -m pytest -n 2 --dist worksteal -q --durations=25 --ignore=tests/test_distributed.py --ignore=tests/test_distributed_saem.py
	$(PY) -m pytest -q tests/test_distributed.py tests/test_distributed_saem.py

bench: $(VENV)/.test-installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_gmm.py
	$(PY) benchmarks/bench_hmm.py
	$(PY) benchmarks/bench_mcmc.py
	$(PY) benchmarks/bench_vi.py
	$(PY) benchmarks/bench_bgmm.py
	$(PY) benchmarks/bench_online_em.py
	$(PY) -m pip install -q -e ".[dask]"
	$(PY) benchmarks/bench_scaling.py

# Leaspy pins torch<2.8, numpy<2 and pandas<3; installed this way it runs beside lateo's stack
# (torch 2.13.0 CPU from local disk, no dependency resolution for leaspy and lifelines).
bench-leaspy: $(VENV)/.test-installed
	$(PY) -m pip install -q -e ".[bench]" "torch==2.13.0" statsmodels
	$(PY) -m pip install -q --no-deps leaspy lifelines autograd autograd-gamma formulaic interface_meta wrapt
	$(PY) benchmarks/bench_saem.py

clean:
	rm -rf $(VENV) .pytest_cache .jax_cache demo-output
