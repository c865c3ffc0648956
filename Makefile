# Parley: `make run` starts the whole thing, `make test` runs the whole suite.
# Only Python 3.11 is needed; everything else is installed into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000

.PHONY: run test lint format messages browser bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: install, migrate, load demo data, start web + worker on http://127.0.0.1:$(PORT)
run: export DEBUG ?= true
run: export PORT := $(PORT)
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --port $(PORT)
	exec scripts/run-all.sh

## test: install test dependencies (and Chromium where it can) and run the whole suite
test: $(VENV)/.dev browser
	$(PY) -m pytest

## browser: Chromium, nginx and dovecot for the tests (installed when run as root with apt-get)
browser:
	@scripts/ensure-test-tools.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## messages: refresh and compile the German catalogue (needs GNU gettext)
messages: $(VENV)/.dev
	DEBUG=true $(PY) manage.py makemessages --locale de --ignore '.venv/*' --ignore 'static/vendor/*' --no-location
	DEBUG=true $(PY) manage.py compilemessages --locale de --ignore '.venv/*'

bench: $(VENV)/.dev
	@ls bench/*.py >/dev/null 2>&1 && for b in bench/*.py; do $(PY) $$b || exit 1; done || echo "no benchmarks yet"

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
