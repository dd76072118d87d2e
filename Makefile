# Two commands matter: `make demo` and `make test`. Both create or reuse .venv from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_NO_PROGRESS := 1

.PHONY: help venv browser demo serve stop test quick lint typecheck pytest bench lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Bytecode is compiled at install: every process importing Prefect (the CLI, the worker's flow
# runs, test subprocesses) then starts with ~40% less CPU, also where PYTHONDONTWRITEBYTECODE
# forbids caching it later.
$(STAMP): uv.lock pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required ($(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(BIN)/uv sync --frozen --quiet --compile-bytecode
	@touch $(STAMP)

venv: $(STAMP) ## Create or update .venv from the lock file

CHROMIUM := /usr/bin/chromium
browser: ## Debian's chromium for the UI end-to-end test (installed with apt when missing)
	@test -x $(CHROMIUM) || { \
		echo "installing Debian's chromium for the browser test ..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y --no-install-recommends chromium >/dev/null; }; \
	}

demo: $(STAMP) ## Run the demo on embedded defaults (SQLite files and a local S3 server)
	$(BIN)/lifecycle demo

serve: $(STAMP) ## Start the local Prefect server (127.0.0.1, basic auth), deployments and a worker
	$(BIN)/lifecycle server start

stop: ## Stop what `make serve` started (by process id)
	@test -x $(BIN)/lifecycle || { echo "nothing to stop: no $(BIN)/lifecycle"; exit 0; }
	$(BIN)/lifecycle server stop

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy, strict
	$(BIN)/mypy .

pytest: $(STAMP) browser ## The test suite only (service tests need local PostgreSQL and MariaDB)
	$(BIN)/pytest

test: lint typecheck pytest ## Lint, type-check and run every test

quick: $(STAMP) ## The tests not marked slow, for the edit loop (CI runs every test: make test)
	$(BIN)/pytest -m "not slow" -q

bench: $(STAMP) ## Run every benchmark (slow; prints a JSON line per benchmark)
	@for b in benchmarks/[a-z]*.py; do m=$$(basename $$b .py); [ $$m = common ] && continue; $(BIN)/python -m benchmarks.$$m || exit 1; done

lock: ## Re-resolve uv.lock after changing dependencies in pyproject.toml
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv lock

clean: ## Remove the venv and local demo data
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
