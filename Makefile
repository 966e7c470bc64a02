# Two entry points for a fresh machine: `make demo` and `make test`.
# Each bootstraps its own virtualenv from pyproject.toml; nothing else needs installing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint browser memori-venv bench rathena-check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/aiworld dev

# Lint, format and types at zero findings, as CI runs them.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (never a downloaded browser): installed here where we
# can (root with apt); elsewhere they are skipped, and pytest's summary says why (-rs).
CHROMIUM_PACKAGES := chromium chromium-driver
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make test: installing $(CHROMIUM_PACKAGES) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null; \
	else \
		echo "make test: WARNING: no Chromium (/usr/bin/chromium, /usr/bin/chromedriver) and no root apt to install it;" >&2; \
		echo "make test: WARNING: the browser tests of the world viewer will be SKIPPED (apt-get install $(CHROMIUM_PACKAGES))" >&2; \
	fi

# The memori tests (marker `memori`) need the memori extra: torch, sentence-transformers and
# their CUDA libraries, about 8 GB and 4 GB of downloads (README "Memory"). pip keeps no cache of
# them here, so they get a virtualenv of their own in the user's cache, kept across clones and
# runs, built once per set of dependencies in pyproject.toml (a changed set replaces it). It holds the dependencies only:
# the code under test is this clone's (PYTHONPATH). Where the extra cannot be installed, the
# memori tests run in .venv and are skipped, each with the reason (-rs).
MEMORI_KEY := $(shell $(PYTHON) -c 'import hashlib, json, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(hashlib.sha256(json.dumps([p["dependencies"], p["optional-dependencies"]], sort_keys=True).encode()).hexdigest()[:12])')
MEMORI_VENVS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/aiworld
MEMORI_VENV := $(MEMORI_VENVS)/venv-memori-$(MEMORI_KEY)
memori-venv:
	@if [ -f $(MEMORI_VENV)/.installed ]; then :; \
	else \
		echo "make test: building $(MEMORI_VENV) for the memori tests (the memori extra: several GB, once)"; \
		rm -rf $(MEMORI_VENVS)/venv-memori-*; \
		{ $(PYTHON) -m venv $(MEMORI_VENV) && \
		  $(MEMORI_VENV)/bin/pip install --quiet --upgrade pip && \
		  $(MEMORI_VENV)/bin/pip install --quiet '.[dev,memori]' && \
		  $(MEMORI_VENV)/bin/pip uninstall --quiet --yes rathena-ai-world && \
		  $(MEMORI_VENV)/bin/pip check && \
		  touch $(MEMORI_VENV)/.installed; } || \
		{ echo "make test: WARNING: the memori extra could not be installed (see above);" >&2; \
		  echo "make test: WARNING: the memori tests will be SKIPPED" >&2; }; \
	fi

# The memori tests run first, in their own virtualenv (or skipped in .venv, see memori-venv), so
# that the suite's own summary closes the output. pytest exits 5 when a selection collects no
# test; say so for the suite instead of passing silently (a selection may hold no memori test).
test: lint browser memori-venv
	@if [ -f $(MEMORI_VENV)/.installed ]; then \
		PYTHONPATH=$(CURDIR) $(MEMORI_VENV)/bin/python -m pytest -m memori $(PYTEST_ARGS); memori=$$?; \
	else \
		$(BIN)/pytest -m memori $(PYTEST_ARGS); memori=$$?; \
	fi; \
	$(BIN)/pytest -m "not memori" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	if [ $$memori -ne 0 ] && [ $$memori -ne 5 ]; then rc=$$memori; fi; \
	exit $$rc

# The short variant (100 NPCs, a few minutes); `make bench BENCH_ARGS=--full` runs 1,000 NPCs.
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Our scripts and tables on a real rAthena with the service, the bridge and a real client (OpenKore).
# Not part of `make test`: it needs RATHENA_DIR (a built rAthena) and OPENKORE_DIR; see rathena/INSTALL.md.
rathena-check: $(BIN)/.installed
	$(BIN)/python -m rathena.check

clean:
	rm -rf $(VENV) .aiworld .pytest_cache
