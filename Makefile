# `make run` and `make test` each do all of their set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: the dashboard and its runner on http://127.0.0.1:5000 (embedded SQLite by default)
run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

## test: the whole suite, browser tests included (installs Debian's chromium and fuse3 if
## missing: the browser tests, and the test of SQLite's disk out of reach)
test: $(VENV)/.dev
	@{ command -v chromium && command -v fusermount3; } >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq chromium fuse3 >/dev/null)
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
