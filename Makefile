# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser lint test demo bench proto screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium and chromium-driver, for the review pages' browser tests and screenshots. Selenium
# is pointed at them (tests/test_review.py): nothing downloads a browser of its own.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# ruff (lint and format) and mypy (strict on linkage/ and services/, lenient on tests: pyproject.toml)
# over the tree: `make test` runs them first, so CI does too.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install browser lint
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/linkage demo

bench: install
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Regenerate linkage/protocol/v1 from proto/linkage/v1 (a test fails when they drift apart).
proto: install
	$(BIN)/python -m linkage.protocol._codegen

# Regenerate docs/screenshots/*.png from a fresh demo run (README: Review pages).
screenshots: install browser
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache build *.egg-info
