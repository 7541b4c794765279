# sellerdesk: `make run` serves the demo on 127.0.0.1:8000, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run serve migrate seed test lint typecheck test-postgres test-sqlite lock bench clean \
	vendor test-browser

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
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
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

# The dashboard's one JavaScript library, from the npm registry, committed under static/vendor
# so that running the app needs no network. `make vendor` refreshes it and checks its digest.
HTMX_VERSION := 2.0.11
VENDOR_DIR   := src/sellerdesk/dashboard/static/vendor

vendor:  ## fetch htmx $(HTMX_VERSION) from the npm registry into the dashboard's static files
	rm -rf /tmp/sellerdesk-vendor && mkdir -p /tmp/sellerdesk-vendor $(VENDOR_DIR)
	cd /tmp/sellerdesk-vendor && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null \
		&& tar xzf htmx.org-$(HTMX_VERSION).tgz
	cp /tmp/sellerdesk-vendor/package/dist/htmx.min.js $(VENDOR_DIR)/htmx.min.js
	cp /tmp/sellerdesk-vendor/package/LICENSE $(VENDOR_DIR)/htmx.LICENSE
	cd $(VENDOR_DIR) && sha256sum -c SHA256SUMS

test-browser: install  ## the dashboard in headless Chromium (screenshots in screenshots/)
	$(BIN)/pytest -q -o addopts="-ra --strict-markers" tests/browser $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache sellerdesk.db*
