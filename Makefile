# The two commands of the README, plus helpers. Each installs what it needs on first use.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: serve test smoke bench lint

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[test]"
	# python-alipay-sdk and alipay-sdk-python both install a package named `alipay`: keep this one apart.
	$(VENV)/bin/pip install -q --no-deps --upgrade --target $(VENV)/alipay-community-sdk python-alipay-sdk==3.4.0
	rm -f $(VENV)/.installed-* && touch $(STAMP)

## Start the whole platform on the embedded default (SQLite, in-process workers and sandbox channel).
serve: $(STAMP)
	$(VENV)/bin/piaohao serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

## Run the tests: SQLite always, PostgreSQL too when it is reachable on 127.0.0.1:5432.
test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench simulators scripts examples
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n 3 $(PYTEST_ARGS)

## The API.md happy path against a freshly started server (needs ../shared/contract/smoke.py).
smoke: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/python ../shared/contract/smoke.py $(SMOKE_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/e2e/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench simulators scripts examples
	$(VENV)/bin/lint-imports
