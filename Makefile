# Two commands (see README): `make demo` and `make test`. Each one creates or reuses
# the virtual environment .venv in this folder, installs what it needs, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test venv venv-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	-$(PY) -m src.fast_ops  # fast CPU kernels into ~/.cache/shufflenetv1_ms (else built on first use; no compiler: plain path)
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

demo: venv
	$(PY) demo.py

# Two workers, a module on one worker at a time (its fixtures are built once): the entry points the
# tests start compile their graphs on one core, so two run side by side on 2 cores.
test: venv-test
	$(PY) -m pytest tests -n 2 --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf demo_output .pytest_cache
