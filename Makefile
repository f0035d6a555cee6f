# Two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   - install what is needed, start each reference deployment, certify it, stop it
#   make test   - install what is needed, lint, type-check and run the whole self-test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 2

.PHONY: bootstrap demo test lint typecheck selftest bench clean

bootstrap: $(STAMP)

$(STAMP): pyproject.toml fixtures/bootstrap/system.sh
	bash fixtures/bootstrap/system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: bootstrap
	$(BIN)/gates demo oroboros
	$(BIN)/gates demo nooterra

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

# The systemd host tier boots containers; it runs on its own, after the rest, so that its
# load does not starve the loopback reference's probes. The upstream tier runs the real upstream
# systems (one deployment per module: npm ci / virtualenvs into a cache on first use), also on its own.
selftest: bootstrap
	$(BIN)/python -m pytest -n $(JOBS) tests/unit tests/reference
	$(BIN)/python -m pytest tests/host
	$(BIN)/python -m pytest tests/upstream

test: lint typecheck selftest

bench: bootstrap
	$(BIN)/python tests/bench/bench_health.py

clean:
	rm -rf $(VENV) artifacts/gates artifacts/run artifacts/junit.xml artifacts/report.html artifacts/pytest-report.html
