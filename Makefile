# `make demo` and `make test` are the README's two commands: each creates the
# virtual environment and installs the package first when needed, at the exact
# versions of constraints.txt (PIP_CONSTRAINT also reaches pip's build environment).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := test,sim,bench
PINNED := PIP_CONSTRAINT=$(CURDIR)/constraints.txt
LATEST_VENV := .venv-latest
NOHIREDIS_VENV := .venv-nohiredis
# The tests that load scripts, reload them after NOSCRIPT (in pipelines too) and
# survive SCRIPT FLUSH: run again where redis-py parses replies without hiredis.
SCRIPT_TESTS := tests/test_scripts.py tests/test_faults_redis.py tests/test_faults_scripts.py tests/test_hiredis.py

.PHONY: setup test lint demo bench clean test-latest test-nohiredis lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PINNED) $(PY) -m pip install -q --upgrade pip
	$(PINNED) $(PY) -m pip install -q -e '.[$(EXTRAS)]'
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

# The script tests in a second environment without hiredis (pinned otherwise).
test-nohiredis:
	test -x $(NOHIREDIS_VENV)/bin/python || $(PYTHON) -m venv $(NOHIREDIS_VENV)
	$(PINNED) $(NOHIREDIS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PINNED) $(NOHIREDIS_VENV)/bin/python -m pip install -q -e '.[$(EXTRAS)]'
	$(NOHIREDIS_VENV)/bin/python -m pip uninstall -q -y hiredis
	PROVISIONER_EXPECT_HIREDIS=0 $(NOHIREDIS_VENV)/bin/python -m pytest -q $(SCRIPT_TESTS)

# Drift on purpose: the newest versions the ranges of pyproject.toml allow, no
# constraints, then lint and the whole suite. Not part of .ci/run.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q -e '.[$(EXTRAS)]'
	$(LATEST_VENV)/bin/python -m ruff check provisioner tests
	$(LATEST_VENV)/bin/python -m ruff format --check provisioner tests
	$(LATEST_VENV)/bin/python -m mypy
	$(LATEST_VENV)/bin/python -m pytest -q

# Move the pins: write constraints.txt from the environment test-latest built.
lock:
	test -x $(LATEST_VENV)/bin/python || { echo "run 'make test-latest' first"; exit 2; }
	{ sed -n '1,2p' constraints.txt; \
	  { $(LATEST_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^#'; \
	    $(LATEST_VENV)/bin/python -m pip --version | awk '{print "pip==" $$2}'; \
	    grep -E '^(setuptools|wheel)==' constraints.txt; } | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(NOHIREDIS_VENV) build
