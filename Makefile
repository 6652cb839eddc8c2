# The README's commands. `make serve` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIND ?= 127.0.0.1
PORT ?= 8000
export LUMINET_PUBLIC_URL ?= http://localhost:$(PORT)

.PHONY: migrate serve superuser stack test lint audit format clean

# Each step says what it does in one line; the commands themselves stay quiet.
SAY := @printf '==> %s\n'

# Two markers: the server needs only requirements.txt (`make serve`); the tests and
# linters add requirements-dev.txt. A clean clone builds what the target needs.
$(VENV)/.server-installed: requirements.txt
	$(SAY) "Installing the server's requirements (requirements.txt) into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.server-installed requirements-dev.txt
	$(SAY) "Installing the development tools into $(VENV) (requirements-dev.txt)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

var/secret_key:
	$(SAY) "Writing a secret key for this machine to var/secret_key"
	@mkdir -p var
	@$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	@chmod 600 $@

# manage.py reads var/secret_key itself when SECRET_KEY is unset.
migrate: $(VENV)/.server-installed var/secret_key
	$(SAY) "Applying database migrations"
	@$(PY) manage.py migrate --noinput -v 0

# Start the server on the embedded default (SQLite, in-memory channel layer).
serve: migrate
	$(SAY) "Collecting the admin's static files into var/static"
	@$(PY) manage.py collectstatic --noinput -v 0
	$(SAY) "Keeping a development token in var/dev-token"
	@$(PY) manage.py dev_token --quiet
	$(SAY) "Starting the server on $(BIND):$(PORT)"
	@$(PY) manage.py serve --bind $(BIND) --port $(PORT) --dev-token var/dev-token

# An admin user for /admin/: asks for a name and a password.
superuser: migrate
	@$(PY) manage.py createsuperuser

# The deployment on this machine (harness/stack.py): Caddy with its own CA (tls
# internal) on https://luminet.localhost:$(STACK_PORT), two daphne processes on Redis
# (REDIS_URL, default redis://127.0.0.1:6379, or a private redis-server), and a client
# exposing LOCAL_PORT. Ctrl-C stops everything; state stays in var/stack.
LOCAL_PORT ?= 3000
STACK_PORT ?= 8443
stack: $(VENV)/.dev-installed var/secret_key
	@$(PY) -m harness.stack --local-port $(LOCAL_PORT) --https-port $(STACK_PORT)

# TEST_WORKERS test processes at once (pytest-xdist), each taking whole files, so a
# file's module fixtures (a stack behind Caddy, a browser) start once.
TEST_WORKERS ?= 2
test: $(VENV)/.dev-installed
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy client tunnels tokens tunnelsite harness

# Known-vulnerable installed versions, against the advisories the project keeps (offline).
audit: $(VENV)/.dev-installed
	$(PY) .ci/audit.py

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var db.sqlite3 .pytest_cache .ruff_cache build luminet.egg-info

# The benchmark of issue 4 (docs/performance.md): needs wrk (apt-get install wrk) and
# Redis at REDIS_URL (default redis://127.0.0.1:6379/10). BENCH_ARGS=--smoke for a short run.
.PHONY: bench
bench: $(VENV)/.dev-installed
	$(PY) -m bench $(BENCH_ARGS)

# The soak of issue 8 (docs/reliability.md): 200 tunnels, churn and mixed traffic for
# 30 minutes; Redis at REDIS_URL (default redis://127.0.0.1:6379/11). Not part of
# `make test`. SOAK_ARGS="--minutes 2 --tunnels 20" for a quick check.
.PHONY: soak
soak: $(VENV)/.dev-installed
	$(PY) -m bench.soak $(SOAK_ARGS)
