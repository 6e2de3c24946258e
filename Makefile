# The two commands a newcomer needs: `make run` and `make test`.
# Both create ./.venv on first use and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# checkov gets its own environment: it pins packaging<24, google-cloud-bigquery needs >=24.2.
# tests/test_terraform.py runs .venv-checkov/bin/checkov on terraform/.
.venv-checkov/.installed:
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet checkov==3.3.30
	touch $@

# schemathesis gets its own environment too (its pins are its own); tests/test_fuzz.py
# runs .venv-fuzz/bin/schemathesis against a real server process.
.venv-fuzz/.installed:
	test -x .venv-fuzz/bin/python || $(PYTHON) -m venv .venv-fuzz
	.venv-fuzz/bin/python -m pip install --quiet schemathesis==4.32.5
	touch $@

run: $(VENV)/.runtime
	$(PY) -m shared.local_server

test: $(VENV)/.dev .venv-checkov/.installed .venv-fuzz/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy shared
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m mypy shared

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(VENV)/.dev
	$(PY) -m bench.operations
	$(PY) -m bench.revalidation

clean:
	rm -rf $(VENV) .venv-checkov .venv-fuzz .pytest_cache .ruff_cache .mypy_cache
