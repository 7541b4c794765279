# sellerdesk: `make run` serves the demo on 127.0.0.1:8000, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Parallel tests (pytest-xdist): one worker per core, at most 4; each has its own database and
# Redis key prefix. Tests marked `xdist_group("heavy_concurrency")` (hundreds of requests at
# once) run on one worker, one after the other. `make test PYTEST_WORKERS=0`: one process.
PYTEST_WORKERS ?= auto
PYTEST_XDIST := -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadgroup
HOST ?= 127.0.0.1
PORT ?= 8000
# Swagger UI's assets, served by /docs itself (no CDN): refreshed by `make swagger-ui`.
SWAGGER_UI_VERSION := 5.35.0
SWAGGER_UI_DIR := src/sellerdesk/static/swagger-ui
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
	favicon-32x32.png LICENSE NOTICE

.PHONY: install run serve migrate seed test lint typecheck test-postgres test-sqlite lock bench bench-quick \
	clean mutate swagger-ui vendor test-browser test-reliability

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install  ## migrate, seed demo data and serve on SQLite (`make run PORT=8080 HOST=0.0.0.0`)
	$(BIN)/sellerdesk migrate
	$(BIN)/sellerdesk seed
	$(BIN)/sellerdesk serve --host $(HOST) --port $(PORT)

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
	TEST_BACKEND=postgres $(BIN)/pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

test-sqlite: install  ## SQLite, in-process cache and limits
	TEST_BACKEND=sqlite $(BIN)/pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

test: lint typecheck test-postgres test-sqlite

lock:  ## refresh requirements.lock from pyproject.toml in a scratch venv
	rm -rf /tmp/sellerdesk-lock && $(PYTHON) -m venv /tmp/sellerdesk-lock
	/tmp/sellerdesk-lock/bin/pip install --quiet --upgrade pip
	/tmp/sellerdesk-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/sellerdesk-lock/bin/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

swagger-ui:  ## vendor Swagger UI's assets from npm's swagger-ui-dist (SWAGGER_UI_VERSION)
	rm -rf /tmp/sellerdesk-swagger-ui && mkdir -p /tmp/sellerdesk-swagger-ui
	cd /tmp/sellerdesk-swagger-ui && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null
	tar -xzf /tmp/sellerdesk-swagger-ui/swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz \
		-C /tmp/sellerdesk-swagger-ui
	mkdir -p $(SWAGGER_UI_DIR)
	cd /tmp/sellerdesk-swagger-ui/package && cp $(SWAGGER_UI_FILES) $(CURDIR)/$(SWAGGER_UI_DIR)/
	sed -i '/sourceMappingURL=/d' $(SWAGGER_UI_DIR)/swagger-ui-bundle.js $(SWAGGER_UI_DIR)/swagger-ui.css
	echo "$(SWAGGER_UI_VERSION)" > $(SWAGGER_UI_DIR)/VERSION
	rm -rf /tmp/sellerdesk-swagger-ui

# bench/run.py: one API process (core 0) against a bare FastAPI app, driven by wrk (core 1) on
# PostgreSQL + Redis; writes bench/RESULTS.md. wrk comes from Debian's packages: installed here
# when missing and we are root (as .ci/run installs Chromium), otherwise named.
WRK_INSTALL = command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	&& DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
	|| { echo "bench: wrk is missing: apt-get install -y wrk" >&2; exit 1; }

bench: install  ## full benchmark (15 s per scenario)
	$(WRK_INSTALL)
	$(BIN)/python bench/run.py

bench-quick: install  ## the same in under 3 minutes (5 s per scenario)
	$(WRK_INSTALL)
	$(BIN)/python bench/run.py --quick

# Mutation testing of the money and auth core (docs/mutation.md); slow, so not part of `test`.
# MUTANTS= limits the run to mutant names (globs), e.g. MUTANTS='sellerdesk.kit.idempotency.*'.
MUTANTS ?=
MUTATE_JOBS ?= 2
mutate: install
	set -f; PATH="$(CURDIR)/$(BIN):$$PATH" TEST_BACKEND=sqlite $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	set -f; $(BIN)/python scripts/mutation_report.py $(MUTANTS)

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

# Faults, mixed load and invariants (docs/reliability.md): real processes, a private Redis and
# PostgreSQL cluster per test, one test at a time (they load the machine on purpose). Each test's
# figures are printed at the end ("reliability figures"), and appended to $(RELIABILITY_REPORT).
RELIABILITY_REPORT ?= reliability-figures.txt
# On SQLite too where a fault means something there: a killed server, the security sweep.
RELIABILITY_SQLITE := tests/reliability/test_server_kill.py tests/reliability/test_security_sweep.py
test-reliability: install  ## the reliability suite on PostgreSQL + Redis, then SQLite (~7 min)
	rm -f $(RELIABILITY_REPORT)
	TEST_BACKEND=postgres RELIABILITY_REPORT=$(RELIABILITY_REPORT) \
		$(BIN)/pytest -q -n 0 -m reliability tests/reliability $(PYTEST_ARGS)
	TEST_BACKEND=sqlite RELIABILITY_REPORT=$(RELIABILITY_REPORT) \
		$(BIN)/pytest -q -n 0 -m reliability $(RELIABILITY_SQLITE) $(PYTEST_ARGS)

test-browser: install  ## the dashboard in headless Chromium (screenshots in screenshots/)
	$(BIN)/pytest -q -o addopts="-ra --strict-markers" tests/browser $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache sellerdesk.db* mutants reliability-figures.txt
