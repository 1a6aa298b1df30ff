# `make demo` and `make test` are the README's two commands: each creates the
# virtual environment and installs the package first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check provisioner tests
	$(PY) -m ruff format --check provisioner tests
	$(PY) -m mypy

demo: $(STAMP)
	$(VENV)/bin/provisioner demo

bench: $(STAMP)
	$(VENV)/bin/provisioner bench policy --quick --jobs 2 --out bench-out

clean:
	rm -rf $(VENV) build
