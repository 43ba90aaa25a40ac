# Two commands: `make run` serves the demo, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test install install-dev migrate seed lint format bench reliability serve-prod clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt tests/interop/package-lock.json | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# The WatermelonDB interop suite drives the real JS client (pinned in package-lock.json).
	if command -v npm >/dev/null; then npm ci --prefix tests/interop --no-audit --no-fund --silent; fi
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask --app wsgi migrate

seed: migrate
	$(BIN)/flask --app wsgi seed-demo --if-empty

run: seed
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT) --with-threads

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

format: install-dev
	$(BIN)/ruff format .

bench: install-dev
	$(BIN)/python bench/run_all.py

# Fault and load scenarios against gunicorn + a private PostgreSQL cluster (about 6 minutes;
# RELIABILITY_SECONDS=30 for a shorter run; see bench/reliability/run.py).
reliability: install-dev
	$(BIN)/python -m bench.reliability $(SCENARIOS)

serve-prod: install
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $${WORKERS:-4} --access-logfile - wsgi:app

clean:
	rm -rf $(VENV) instance .pytest_cache
