# Two commands: `make demo` shows a busy control room, `make test` passes the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench soak clean venv native

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=python3)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The engine compiled with mypyc (services/figures/_native.py); pure Python if it cannot be built.
native: $(STAMP)
	@$(BIN)/python -c 'import sys; from services.figures._native import main; sys.exit(main())'

demo: native
	$(BIN)/pacesetter demo

test: native
	$(BIN)/python -m pytest -m "not slow" -q -p no:cacheprovider --durations=20

test-all: native
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check services streams forecasting api pacesetter tests benchmarks
	$(BIN)/mypy
	$(BIN)/vulture

bench: native
	$(BIN)/python benchmarks/run_all.py

# 20 minutes at 2,000 events/s with a dashboard's event stream: memory flat, freshness steady.
soak: native
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache services/figures/.native
