# The quick start: `make run` serves on SQLite with the embedded worker; `make test` runs the test suite.
# Both create .venv and install the project into it first (once, and again when its files change): `run` only what
# the service needs, `test` and `lint` the development tools too. constraints.txt pins every version (`make lock`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c constraints.txt
RUNTIME := $(VENV)/.installed
DEV := $(VENV)/.installed-dev

.PHONY: install run test lint format demo bench lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "invitelink needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml setup.py constraints.txt | $(BIN)/python
	$(PIP) -e .
	@touch $(RUNTIME)

$(DEV): pyproject.toml setup.py constraints.txt | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $(DEV) $(RUNTIME)

install: $(DEV)

run: $(RUNTIME)
	$(BIN)/invitelink serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

test: $(DEV)
	$(BIN)/pytest

lint: $(DEV)
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy

format: $(DEV)
	$(BIN)/ruff format src tests migrations bench
	$(BIN)/ruff check --fix src tests migrations bench

demo: $(RUNTIME)
	$(BIN)/invitelink demo

# Re-resolve every dependency to its newest allowed version in a throwaway venv and pin the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip && .lock-venv/bin/pip install --quiet '.[dev]'
	( echo "# Pinned by 'make lock' on $$(date -u +%Y-%m-%d); CI, Docker and make install with -c constraints.txt."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^invitelink' ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
