# Two entry points for a fresh machine: `make demo` and `make test`.
# Each bootstraps its own virtualenv from pyproject.toml; nothing else needs installing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint browser bench rathena-check clean

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

# pytest exits 5 when a selection collects no test; say so instead of passing silently.
test: lint browser
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
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
