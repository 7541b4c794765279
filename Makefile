# sellerdesk: `make run` serves the demo on 127.0.0.1:8000, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run serve migrate seed test lint typecheck test-postgres test-sqlite lock bench clean mutate

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install  ## migrate, seed demo data and serve on SQLite (no other service needed)
	$(BIN)/sellerdesk migrate
	$(BIN)/sellerdesk seed
	$(BIN)/sellerdesk serve --host 127.0.0.1 --port 8000

serve: install
	$(BIN)/sellerdesk serve

migrate: install
	$(BIN)/sellerdesk migrate

seed: install
	$(BIN)/sellerdesk seed

lint: install
	$(BIN)/ruff check src tests migrations bench scripts
	$(BIN)/ruff format --check src tests migrations bench scripts
	$(BIN)/lint-imports --no-logo --no-cache .importlinter

typecheck: install
	$(BIN)/mypy

test-postgres: install  ## PostgreSQL + Redis (fails under CI=true when they are unreachable)
	TEST_BACKEND=postgres $(BIN)/pytest -q $(PYTEST_ARGS)

test-sqlite: install  ## SQLite, in-process cache and limits
	TEST_BACKEND=sqlite $(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck test-postgres test-sqlite

lock:  ## refresh requirements.lock from pyproject.toml in a scratch venv
	rm -rf /tmp/sellerdesk-lock && $(PYTHON) -m venv /tmp/sellerdesk-lock
	/tmp/sellerdesk-lock/bin/pip install --quiet --upgrade pip
	/tmp/sellerdesk-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/sellerdesk-lock/bin/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

bench: install
	$(BIN)/python bench/run.py

# Mutation testing of the money and auth core (docs/mutation.md); slow, so not part of `test`.
# MUTANTS= limits the run to mutant names (globs), e.g. MUTANTS='sellerdesk.kit.idempotency.*'.
MUTANTS ?=
MUTATE_JOBS ?= 2
mutate: install
	set -f; PATH="$(CURDIR)/$(BIN):$$PATH" TEST_BACKEND=sqlite $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	set -f; $(BIN)/python scripts/mutation_report.py $(MUTANTS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache sellerdesk.db* mutants
