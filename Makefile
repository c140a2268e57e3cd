# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PORT ?= 8443
CERT_FILE ?= instance/tls/cert.pem
KEY_FILE ?= instance/tls/key.pem
export PORT CERT_FILE KEY_FILE

.PHONY: run test lint install test-install migrate bench bench-billing clean

# uv installs what pyproject.toml asks for into the venv, compiled to bytecode as pip does (13 s on a
# fresh clone here, pip 28 s).
$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/activate
	$(BIN)/pip install -q --disable-pip-version-check 'uv>=0.13,<0.14'

$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $@

install: $(VENV)/.installed

test-install: $(VENV)/.test-installed
	@if [ -f tests/browser/package.json ]; then cd tests/browser && npm ci --no-audit --no-fund --loglevel=error; fi

migrate: install
	$(FLASK) db upgrade

## Serve over HTTPS on https://127.0.0.1:$(PORT) with the embedded SQLite database.
run: migrate
	$(FLASK) tls self-signed --cert $(CERT_FILE) --key $(KEY_FILE)
	$(FLASK) demo init
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## The whole suite on SQLite, then on PostgreSQL (TEST_DATABASE_URL, or the local server when it answers).
test: test-install lint
	$(BIN)/python tests/run_suite.py

## ruff: lint and import order (part of make test).
lint: test-install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/ingest.py

## Billing speed on SQLite and PostgreSQL: 1M events, then 3x (BENCH_ARGS="--scale 10" for the full run).
bench-billing: install
	$(BIN)/python bench/billing.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
