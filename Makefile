# The two commands a newcomer needs: `make run` and `make test` (a bare `make` lists the others).
# Both create ./.venv on first use, with Python 3.11 or newer, and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR := $(or $(INTEGRATIONS_DATA_DIR),.data)

# Succeeds when the interpreter $(1) is Python 3.11 or newer (shared/ uses datetime.UTC, Self, ...).
python_ok = $(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
python_version = $$($(1) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo "unknown (it does not run)")
# pip shows its progress on a terminal and stays quiet in CI and in logs.
PIP_INSTALL = $(1) -m pip install --disable-pip-version-check $$(test -t 1 && test -z "$$CI" || echo --quiet)
# A venv that an older (or since removed) Python built is rebuilt, never reused.
VENV_STALE := $(shell test -e $(VENV) && ! $(call python_ok,$(PY)) && echo yes)

# The TypeScript client and the settings console (Node 20+): npm installs exactly the lock file.
CLIENT := clients/typescript
CLIENT_SOURCES := $(shell find $(CLIENT)/src $(CLIENT)/console $(CLIENT)/scripts $(CLIENT)/test -type f -not -path '*/generated/*' 2>/dev/null)

.DEFAULT_GOAL := help
.PHONY: help run test test-python demo reset lint format bench clean console FORCE

help:
	@echo "Provider integrations service. The two commands a newcomer needs:"
	@echo "  make run     serve the API on http://127.0.0.1:8001 (SQLite + local keyring under ./.data)"
	@echo "  make test    lint, type-check and run the whole test suite"
	@echo "More:"
	@echo "  make demo    the README walkthrough: provider simulators + webhook receiver + the service"
	@echo "  make reset   delete ./.data (keys, integrations, keyring, alerts); asks first, FORCE=1 does not"
	@echo "  make bench   store jobs and KMS calls per operation, revalidation of 1,000 integrations"
	@echo "  make lint    ruff + mypy;  make format  ruff format + fixes"
	@echo "  make console build the settings console make run serves at / (and the TypeScript client; Node 20+)"
	@echo "  make clean   delete the virtualenvs and caches (keeps ./.data)"
	@echo "The first run creates ./.venv with $(PYTHON) (Python 3.11 or newer; PYTHON=python3.12 picks another)."

$(VENV)/.runtime: requirements.txt $(if $(VENV_STALE),FORCE)
	@$(call python_ok,$(PYTHON)) || { \
	  echo "error: $(PYTHON) is Python $(call python_version,$(PYTHON)); this project needs Python 3.11 or newer." >&2; \
	  echo "Install Python 3.11+ and run again, or name one: make $(or $(firstword $(MAKECMDGOALS)),run) PYTHON=python3.11" >&2; \
	  exit 1; }
	@if [ -e $(VENV) ] && ! $(call python_ok,$(PY)); then \
	  echo "$(VENV) was built by Python $(call python_version,$(PY)): rebuilding it with $(PYTHON)"; rm -rf $(VENV); fi
	@test -x $(PY) || { echo "creating $(VENV) with Python $(call python_version,$(PYTHON))"; $(PYTHON) -m venv $(VENV); }
	@echo "installing runtime dependencies into $(VENV) (the first time takes a minute or two)"
	@$(call PIP_INSTALL,$(PY)) -r requirements.txt
	@touch $@

# make demo's stand-ins (moto for AWS) on top of the runtime; the tests use them too.
$(VENV)/.demo: $(VENV)/.runtime requirements-demo.txt
	@echo "installing the demo's stand-ins into $(VENV)"
	@$(call PIP_INSTALL,$(PY)) -r requirements-demo.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.demo requirements-dev.txt
	@echo "installing test dependencies into $(VENV)"
	@$(call PIP_INSTALL,$(PY)) -r requirements-dev.txt
	@touch $@

# checkov gets its own environment: it pins packaging<24, google-cloud-bigquery needs >=24.2.
# tests/test_terraform.py runs .venv-checkov/bin/checkov on terraform/.
.venv-checkov/.installed:
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	@echo "installing checkov into .venv-checkov"
	@$(call PIP_INSTALL,.venv-checkov/bin/python) checkov==3.3.30
	@touch $@

# schemathesis gets its own environment too (its pins are its own); tests/test_fuzz.py
# runs .venv-fuzz/bin/schemathesis against a real server process.
.venv-fuzz/.installed:
	@test -x .venv-fuzz/bin/python || $(PYTHON) -m venv .venv-fuzz
	@echo "installing schemathesis into .venv-fuzz"
	@$(call PIP_INSTALL,.venv-fuzz/bin/python) schemathesis==4.32.5
	@touch $@

# npm ci (never npm install): exactly the committed package-lock.json, again whenever it changes.
$(CLIENT)/node_modules/.lock-installed: $(CLIENT)/package-lock.json
	cd $(CLIENT) && npm ci --no-audit --no-fund $$(test -t 1 && test -z "$$CI" || echo --loglevel=error)
	@touch $@

# One npm script builds it all: types from openapi.yaml, forms from the registry, tsc --strict, the bundle.
$(CLIENT)/dist/site/index.html: $(CLIENT)/node_modules/.lock-installed $(CLIENT_SOURCES) openapi.yaml configs/system/providers.yml
	cd $(CLIENT) && npm run --silent build

console: $(CLIENT)/dist/site/index.html

# The console at / is built first when npm is there; without Node the API runs all the same.
run: $(VENV)/.runtime
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory console; \
	else echo "npm not found: the settings console at / is not built (Node 20+ and make console); the API works"; fi
	$(PY) -m shared.local_server

# Everything: the Python suite, then the TypeScript client's tests and the console's browser journey
# (Node 20+, Debian's chromium at /usr/bin/chromium). The console is built before pytest, whose
# end-to-end tests start make run; --ignore-scripts skips npm test's own pretest build (a plain
# `npm test` there builds first), since the console target has just built it.
test: console test-python
	cd $(CLIENT) && npm test --ignore-scripts

# The Python side alone (what Cloud Build runs before deploying the functions; no page is deployed).
test-python: $(VENV)/.dev .venv-checkov/.installed .venv-fuzz/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m shared.providers --check
	$(PY) -m pytest -q

# The walkthrough's stage in one process; writes $(DATA_DIR)/demo.env for the second terminal.
demo: $(VENV)/.demo
	$(PY) -m tests.demo

# Deletes the local state (make run's and make demo's), after a question unless FORCE=1.
reset:
	@if [ ! -e "$(DATA_DIR)" ]; then echo "nothing to reset: $(DATA_DIR) does not exist"; exit 0; fi; \
	if [ -n "$$(ls -A "$(DATA_DIR)")" ] && [ ! -e "$(DATA_DIR)/integrations.sqlite3" ] \
	  && [ ! -e "$(DATA_DIR)/keyring.json" ] && [ ! -e "$(DATA_DIR)/api_key_pepper" ]; then \
	  echo "refusing: $(DATA_DIR) does not look like the service's data directory" >&2; exit 1; fi; \
	if [ "$(FORCE)" != 1 ]; then \
	  printf 'Delete %s (API keys, integrations, keyring, alerts) for good? [y/N] ' "$(DATA_DIR)"; \
	  read -r answer || answer=; \
	  case "$$answer" in y|Y|yes|YES) ;; *) echo "kept $(DATA_DIR) (FORCE=1 skips the question)"; exit 1;; esac; \
	fi; \
	rm -rf "$(DATA_DIR)" && echo "deleted $(DATA_DIR): the next make run or make demo starts afresh"

# The provider registry's full check (JSON Schema + cross-field rules) runs here,
# at build time; the functions load the checked file without jsonschema.
lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m shared.providers --check

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(VENV)/.dev
	$(PY) -m bench.operations
	$(PY) -m bench.revalidation
	$(PY) -m bench.local_writes

clean:
	rm -rf $(VENV) .venv-checkov .venv-fuzz .pytest_cache .ruff_cache .mypy_cache $(CLIENT)/node_modules $(CLIENT)/dist
	@echo "kept $(DATA_DIR); make reset deletes it"
