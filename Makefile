# Payment Ops: `make run` starts the whole service, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: run test lint prepare env migrate check bench audit

run: prepare env
	@set -a; . ./.env; set +a; \
	$(VENV)/python manage.py migrate --noinput && \
	$(VENV)/python manage.py demo_user && \
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(VENV)/honcho -f Procfile.dev start

test: prepare lint
	$(VENV)/python -m pytest $(PYTEST_ARGS)

# ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy with django-stubs, as pyproject.toml sets them.
lint:
	$(VENV)/ruff check .
	$(VENV)/mypy

prepare:
	@scripts/bootstrap.sh
	@scripts/browser.sh
	@scripts/pgbouncer.sh
	@scripts/services.sh payops
	@scripts/promtool.sh

# A development .env (DEBUG on, fresh secrets) on first run; never overwritten, only completed.
env:
	@test -f .env || { \
	  sed -e "s/^DJANGO_DEBUG=.*/DJANGO_DEBUG=true/" \
	      -e "s/^DJANGO_SECRET_KEY=.*/DJANGO_SECRET_KEY=$$($(VENV)/python -c 'import secrets;print(secrets.token_urlsafe(50))')/" \
	      .env.example > .env; echo "==> wrote .env for development"; }
	@grep -q '^PAYMENT_GATEWAY_WEBHOOK_SECRET=.' .env || { \
	  sed -i '/^PAYMENT_GATEWAY_WEBHOOK_SECRET=/d' .env; \
	  echo "PAYMENT_GATEWAY_WEBHOOK_SECRET=whsec_$$($(VENV)/python -c 'import secrets;print(secrets.token_hex(24))')" >> .env; \
	  echo "==> .env: a gateway webhook signing secret (the sandbox signs the events it delivers with it)"; }

check:
	$(VENV)/python manage.py check

# Known vulnerabilities with a fixed release fail; where PyPI's advisory data is reachable,
# AUDIT_FLAGS=--require-service also fails when a package could not be audited.
audit: prepare
	$(VENV)/python scripts/audit_deps.py $(AUDIT_FLAGS)
