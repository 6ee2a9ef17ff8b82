# The two commands a newcomer needs:
#   make run   - set up and run the platform on its embedded default (http://127.0.0.1:8000)
#   make test  - set up and run the whole test suite (PostgreSQL + Redis, and the SQLite default)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test install install-dev lint services browser worker web bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(RUN_STAMP) $@

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

# The embedded default: SQLite, kombu's filesystem broker and local files under var/, the
# shipped model, one Celery worker started beside the web server and stopped with it. The worker
# embeds Celery beat (-B), which runs the analysis sweep (images left without a message are sent).
run: export DEBUG ?= true
run: $(RUN_STAMP)
	mkdir -p var
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py setup_platform
	$(BIN)/python manage.py install_default_model
	@$(BIN)/celery -A malariaweb worker -B --schedule=var/celerybeat-schedule --loglevel=info --concurrency=1 > var/worker.log 2>&1 & \
	worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	echo "Celery worker started (pid $$worker, log: var/worker.log)"; \
	echo "Open http://127.0.0.1:8000 (Ctrl-C stops the web server and the worker)"; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# Start PostgreSQL and Redis if they are installed here and not running.
services:
	@if command -v pg_ctlcluster >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; fi
	@if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  redis-server --daemonize yes --port 6379 --save "" --appendonly no; fi
	@for i in $$(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done

# Debian's chromium for the Playwright browser tests (Playwright cannot download its own here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=lint DEBUG=false ALLOWED_HOSTS=localhost $(BIN)/python manage.py makemigrations --check --dry-run
	@# The API's OpenAPI schema: generated from the code, valid, and without a single warning.
	mkdir -p var
	SECRET_KEY=lint DEBUG=false ALLOWED_HOSTS=localhost $(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/schema.yaml

# The whole suite against PostgreSQL with Redis as broker, then the embedded default's own
# integration test on SQLite with the filesystem broker.
test: $(DEV_STAMP) services browser lint
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/malaria} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/15} \
	$(BIN)/pytest -p no:cacheprovider
	DATABASE_URL= CELERY_BROKER_URL= $(BIN)/pytest -p no:cacheprovider -m embedded tests/integration

bench: $(DEV_STAMP)
	$(BIN)/python bench/engine.py

clean:
	rm -rf var $(VENV)
