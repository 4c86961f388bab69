# Two commands matter: `make demo` (run the system on embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test test-unit test-agents test-integration chaos lint bench schemas clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --config-settings editable_mode=compat -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/reach demo

up: $(STAMP)
	$(BIN)/reach up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-agents: $(STAMP)
	$(BIN)/pytest tests/agents

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

# Every fault-injection scenario at full size (tests/chaos; make test runs the small ones).
chaos: $(STAMP)
	$(BIN)/pytest -s tests/chaos -m "chaos or chaos_full"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/reach bench ingest

schemas: $(STAMP)
	$(BIN)/reach schemas docs/schemas

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
