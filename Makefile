# caseline: `make run` to try the line, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench transcripts system-deps clean

$(STAMP): pyproject.toml
	@# Debian's own python3 needs python3-venv for `-m venv` (we are root there).
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  apt-get install -y -qq python3-venv >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq python3-venv); \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## run: install, load the demo directory, start web + worker + embedded Redis
run: $(STAMP)
	@bash scripts/run.sh

## system-deps: Debian packages some tests use (a real terminal for the caller)
system-deps:
	@command -v tmux >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq tmux >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq tmux >/dev/null 2>&1)) \
	    || echo "note: could not install tmux; the terminal test will be skipped"; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## test: lint, layering contracts, and every test (real Redis, real SQLite)
test: $(STAMP) system-deps lint
	$(BIN)/pytest -q

## bench: caseline against the framework's ceiling (~7 min; BENCH_ARGS=--quick for ~2)
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

transcripts: $(STAMP)
	$(BIN)/python scripts/transcripts.py

clean:
	rm -rf $(VENV) instance .pytest_cache
