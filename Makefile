# caseline: `make run` to try the line, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint lock bench transcripts screenshots system-deps clean

# requirements.lock pins every package with its hashes (pip-compile --generate-hashes,
# `make lock` to refresh it); the project itself is installed editable on top, alone,
# with twilio_side beside it: Twilio's side of a call (the simulated caller and the REST
# emulator), a distribution of its own (twilio_side/pyproject.toml) so caseline's wheel
# never carries it, yet `make run` and `make test` always have it.
$(STAMP): pyproject.toml twilio_side/pyproject.toml requirements.lock
	@# Debian's own python3 needs python3-venv for `-m venv` (we are root there).
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  apt-get install -y -qq python3-venv >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq python3-venv); \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . -e ./twilio_side
	touch $(STAMP)

## lock: re-pin requirements.lock from pyproject.toml (newest releases, with hashes)
lock:
	$(PYTHON) -m venv .lock-tools && .lock-tools/bin/python -m pip install -q pip-tools
	.lock-tools/bin/pip-compile -q --generate-hashes --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links --extra test --extra bench --strip-extras -o requirements.lock \
	  pyproject.toml twilio_side/pyproject.toml
	rm -rf .lock-tools

## run: install, load the demo directory, start web + worker + embedded Redis
run: $(STAMP)
	@bash scripts/run.sh

## system-deps: Debian packages some tests use (a real terminal for the caller; chromium
## for the console's browser tests, driven by Playwright for Python: never `playwright install`;
## postgresql for the database tests' throwaway cluster, whose programs are off PATH;
## Debian's redis-server (built with TLS) and redis-sentinel for the failover drill and the
## TLS/ACL tests, openssl for their throwaway certificates)
system-deps:
	@for need in tmux:tmux chromium:chromium initdb:postgresql \
	    /usr/bin/redis-server:redis-server /usr/bin/redis-sentinel:redis-sentinel \
	    openssl:openssl; do \
	  cmd=$${need%%:*}; pkg=$${need##*:}; \
	  command -v $$cmd >/dev/null 2>&1 && continue; \
	  compgen -G "/usr/lib/postgresql/*/bin/$$cmd" >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$pkg >/dev/null 2>&1)) \
	    || echo "note: could not install $$pkg; the tests that need it will be skipped"; \
	  else echo "note: $$pkg is missing; the tests that need it will be skipped"; fi; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## test: lint, layering contracts, and every test (real Redis; real SQLite, and PostgreSQL
## for the database tests)
test: $(STAMP) system-deps lint
	$(BIN)/pytest -q

## bench: caseline against the framework's ceiling (~7 min; BENCH_ARGS=--quick for ~2)
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

transcripts: $(STAMP)
	$(BIN)/python scripts/transcripts.py

## screenshots: docs/console-advisor.png and docs/console-wallboard.png, in Debian's chromium
screenshots: $(STAMP) system-deps
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) instance .pytest_cache
