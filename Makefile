# The two set-up commands are `make run` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser nginx faketime run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,otel]'
	touch $(STAMP)

run: install
	MFA_DEMO=$${MFA_DEMO:-1} $(BIN)/mfa serve

# Debian's Chromium for the browser tests (tests/e2e); nothing to do when it is there.
browser:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# Debian's nginx for the behind-a-proxy test (tests/integration/test_behind_proxy.py), which starts
# its own unprivileged instance from infra/nginx/mfa.conf; nothing to do when it is there.
nginx:
	@test -x /usr/sbin/nginx || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx; }

# Debian's faketime for the clock-skew fault test (tests/faults); nothing to do when it is there.
faketime:
	@command -v faketime >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y faketime; }

test: install browser nginx faketime
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check services contracts tests bench
	$(BIN)/mypy services contracts bench

bench: install
	$(BIN)/python -m bench.second_factor
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.audit
	$(BIN)/python -m bench.bus
	$(BIN)/python -m bench.login_flood
	$(BIN)/python -m bench.policy

clean:
	rm -rf $(VENV) var build *.egg-info
