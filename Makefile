# The two set-up commands are `make run` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	MFA_DEMO=$${MFA_DEMO:-1} $(BIN)/mfa serve

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check services contracts tests bench
	$(BIN)/mypy services contracts

bench: install
	$(BIN)/python -m bench.second_factor
	$(BIN)/python -m bench.audit
	$(BIN)/python -m bench.bus

clean:
	rm -rf $(VENV) var build *.egg-info
