# Two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   - install what is needed, start the real upstream systems, certify them against their
#                 committed verdict tables, stop them
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

# The real upstream systems, each compared with its committed verdict table: a known upstream defect (each
# listed there with its upstream file:line) does not stop the demo, any other verdict does.
demo: bootstrap
	$(BIN)/gates demo nooterra-upstream --out artifacts/demo/nooterra-upstream \
		--expect tests/upstream/nooterra_upstream_verdicts.yaml
	$(BIN)/gates demo oroboros-upstream --out artifacts/demo/oroboros-upstream \
		--expect tests/upstream/oroboros_upstream_verdicts.yaml

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
	rm -rf $(VENV) artifacts/demo artifacts/gates artifacts/run artifacts/junit.xml artifacts/report.html artifacts/pytest-report.html
