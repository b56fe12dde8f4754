# The two commands that matter: `make run` (the whole service on embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests use the real PostgreSQL and Redis of this machine kind unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/mir
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint bench-intake bench-delivery bench-audit bench-portal migrate clean

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

run: $(VENV)/.runtime
	$(PY) manage.py devstack

test: $(VENV)/.dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	MIR_ENV=test $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

bench-intake: $(VENV)/.dev
	$(PY) scripts/bench_intake.py $(BENCH_ARGS)

# Needs the PostgreSQL (127.0.0.1:5432, trust) and Redis (db 12) of this machine kind; see docs/performance.md.
bench-delivery: $(VENV)/.dev
	$(PY) scripts/bench_delivery.py $(BENCH_ARGS)

# Needs the PostgreSQL of this machine kind (127.0.0.1:5432, trust); uses the database mir_bench_audit.
bench-audit: $(VENV)/.dev
	$(PY) scripts/bench_audit_chain.py $(BENCH_ARGS)

# Adds rows to the database in DATABASE_URL (set it to a scratch one); see docs/performance.md ("Portal").
bench-portal: $(VENV)/.dev
	$(PY) scripts/bench_portal.py $(BENCH_ARGS)

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate

clean:
	rm -rf var .pytest_cache
