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

# The systemd hosts (containers) and the real upstream systems (one deployment per module: npm ci and
# virtualenvs into a cache on first use) run after the rest, so that their load does not starve the
# loopback references' probes; each of their modules stays on one worker (--dist loadfile), so each
# deployment is brought up once.
selftest: bootstrap
	$(BIN)/python -m pytest -n $(JOBS) tests/unit tests/hostile tests/fuzz tests/reference
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile tests/host tests/upstream

test: lint typecheck selftest

bench: bootstrap
	$(BIN)/python tests/bench/bench_health.py

clean:
	rm -rf $(VENV) artifacts/gates artifacts/run artifacts/junit.xml artifacts/report.html artifacts/pytest-report.html
