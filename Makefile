# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Embedded (or configured) Postgres and Redis, migrations, demo accounts and data, three
# Celery workers (interactive, bulk, training), beat and the web server on
# http://127.0.0.1:8000. Ctrl-C stops everything.
demo: install
	$(PY) manage.py demo

test: install lint
	./scripts/ensure-chromium
	$(PY) -m pytest

# ruff lint and format over the whole tree; `make test` runs it first.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Stop the embedded Postgres and Redis that this checkout started.
stop:
	$(PY) -m wildweb.embedded stop
