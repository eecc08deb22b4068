# The README's two commands are `make figures` and `make test`; both create the environment first.
PYTHON  ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= mini
NB      ?=
PYTEST_ARGS ?=

.PHONY: env test check lint figures bench site clean help

help:
	@echo "make figures   regenerate every figure on the $(PROFILE) profile (PROFILE=tiny|mini|imagenette|imagenet, NB='02 07' for a subset)"
	@echo "make test      lint, then the whole test suite (unit tests + every notebook on the tiny profile + the browser)"
	@echo "make check     lint, then the fast tier (no notebook, browser or slow test): under a minute"
	@echo "make bench     run every benchmark in benchmarks/"
	@echo "make site      build the static HTML site of the executed notebooks"
	@echo "make env       create or refresh .venv with the pinned set"

env: $(STAMP)

# (Re)create the virtual environment when it is missing or older than the pinned set
# (requirements.txt; pyproject.toml and environment.yml carry the same pins, checked by a test).
$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: env
	$(VENV)/bin/ruff check zfcore tests benchmarks
	$(VENV)/bin/ruff format --check zfcore tests benchmarks

test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

check: lint
	$(PY) -m pytest -n 2 -q -m "not slow and not notebook and not browser" $(PYTEST_ARGS)

figures: env
	$(PY) -m zfcore.runner --profile $(PROFILE) $(NB)

bench: env
	@set -e; for f in benchmarks/[a-z]*.py; do \
	  m=$$(basename $$f .py); echo "== benchmarks.$$m"; $(PY) -m benchmarks.$$m --save figures/benchmarks; done; \
	$(PY) -m zfcore.paper.readme readme

site: env
	$(PY) -m zfcore.site --profile $(PROFILE)

clean:
	rm -rf build .cache
