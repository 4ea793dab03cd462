# One command each: `make demo` runs the service end to end, `make test` runs the whole suite,
# `make bench` runs the benchmark. Each creates .venv from the pinned lock on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint bench soak clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/quantum-exec demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy services/quantum_exec services/binance_sim

bench: install
	$(BIN)/python -m bench

# The reliability soak: 200 SIGKILL cycles, every exchange and Redis fault, 10,000 fuzz cases.
soak: install
	$(BIN)/python scripts/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
