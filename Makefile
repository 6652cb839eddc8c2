# The README's commands. `make serve` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIND ?= 127.0.0.1
PORT ?= 8000
export LUMINET_PUBLIC_URL ?= http://localhost:$(PORT)

.PHONY: serve test lint audit format clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

var/secret_key:
	mkdir -p var
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

# Start the server on the embedded default (SQLite, in-memory channel layer).
serve: $(VENV)/.installed var/secret_key
	SECRET_KEY=$$(cat var/secret_key) $(PY) manage.py migrate --noinput
	SECRET_KEY=$$(cat var/secret_key) $(PY) manage.py dev_token --port $(PORT)
	SECRET_KEY=$$(cat var/secret_key) $(PY) manage.py serve --bind $(BIND) --port $(PORT)

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy client tunnels tokens tunnelsite harness

# Known-vulnerable installed versions, against the advisories the project keeps (offline).
audit: $(VENV)/.installed
	$(PY) .ci/audit.py

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var db.sqlite3 .pytest_cache .ruff_cache build luminet.egg-info

# The benchmark of issue 4 (docs/performance.md): needs wrk (apt-get install wrk) and
# Redis at REDIS_URL (default redis://127.0.0.1:6379/10). BENCH_ARGS=--smoke for a short run.
.PHONY: bench
bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

# The soak of issue 8 (docs/reliability.md): 200 tunnels, churn and mixed traffic for
# 30 minutes; Redis at REDIS_URL (default redis://127.0.0.1:6379/11). Not part of
# `make test`. SOAK_ARGS="--minutes 2 --tunnels 20" for a quick check.
.PHONY: soak
soak: $(VENV)/.installed
	$(PY) -m bench.soak $(SOAK_ARGS)
