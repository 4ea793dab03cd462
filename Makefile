# One command each: `make demo` runs the service end to end, `make test` runs the whole suite,
# `make bench` runs the benchmark. Each creates .venv from the pinned lock on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Every dependency, the dev tools and the build backend, pinned with their hashes: pip refuses a
# file whose hash differs (a replaced release, a compromised mirror). requirements.lock is the
# runtime subset (the image, a production venv). `make lock` regenerates both.
LOCK_ARGS := --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url

.PHONY: install demo test lint bench soak clean lock

# The project itself cannot be hash-checked: its dependencies come from the lock first, then it is
# installed without them, built by the locked setuptools (no isolated build fetching an unpinned one).
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/quantum-exec demo

# The whole suite, then the account tests again with user-stream events of different types in a
# seeded random order (Binance orders events within one type only). Each on three workers, a file
# per worker at a time (most tests wait on real timers: leases, drains, restarts, not the CPU), then
# its load-sensitive tests (marker serial: a latency, throughput or kill-timing bound) alone.
PARALLEL := -n 3 --dist loadfile -m "not serial"
REORDER  := QUANTUM_TEST_STREAM_REORDER=7:40
test: install
	$(BIN)/pytest -q $(PARALLEL)
	$(BIN)/pytest -q -m serial
	$(REORDER) $(BIN)/pytest -q $(PARALLEL) tests/account
	$(REORDER) $(BIN)/pytest -q -m serial tests/account

lint: install
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy services/quantum_exec services/binance_sim

bench: install
	$(BIN)/python -m bench

# The reliability soak: 200 SIGKILL cycles, every exchange and Redis fault, 10,000 fuzz cases.
soak: install
	$(BIN)/python scripts/soak.py

# After changing pyproject.toml's dependencies: pins kept unless a range forces a change
# (pip-compile --upgrade-package NAME to move one). pip-tools runs from a throwaway venv.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q pip-tools
	.lock-venv/bin/pip-compile -q $(LOCK_ARGS) --extra dev --build-deps-for editable \
		--output-file requirements-dev.lock pyproject.toml
	.lock-venv/bin/pip-compile -q $(LOCK_ARGS) --build-deps-for wheel --constraint requirements-dev.lock \
		--output-file requirements.lock pyproject.toml
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
