"""The reliability suite, short form (CI). ``scripts/soak.py`` runs the same scenarios long.

Real Redis, the simulator in its own process, the service as ``quantum-exec serve`` processes.
The promises checked from the simulator's state and the result stream: every intent gets exactly
one final result; no intent causes two entry orders; every open position has its SL and TP (or
a result loudly says why not); no orphan protective order; the API key and secret never appear in
logs, results, dead letters or metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.crash import run_crash_cycles, run_crash_loop
from reliability.faults import run_exchange_faults, run_redis_fault
from reliability.fuzz import run_fuzz

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

KILL_CYCLES = int(os.environ.get("QUANTUM_REL_KILL_CYCLES", "20"))
FUZZ_CASES = int(os.environ.get("QUANTUM_REL_FUZZ_CASES", "1000"))
LOOP_CYCLES = int(os.environ.get("QUANTUM_REL_LOOP_CYCLES", "20"))


@pytest.mark.timeout(240)
def test_sigkill_cycles_keep_every_promise(tmp_path: Path) -> None:
    figures = run_crash_cycles(tmp_path, KILL_CYCLES, seed=int(os.environ.get("QUANTUM_REL_SEED", "7")))
    assert figures.verdict is not None
    figures.verdict.assert_clean()
    assert figures.cycles == KILL_CYCLES and figures.intents >= 2 * KILL_CYCLES
    assert sum(figures.hits.values()) > 0  # the narrow windows were really hit
    assert figures.secrets_found == []


# serial: each restart is killed 0.05-0.7 s after it is up, so how much work a restart gets done
# depends on the machine's load; beside the suite's other workers on a loaded machine it ended with
# four POISON_MESSAGE results. The other tests here passed there: they run in the parallel pass.
@pytest.mark.serial
@pytest.mark.timeout(300)
def test_a_crash_loop_poisons_nothing_and_leaves_every_position_protected(tmp_path: Path) -> None:
    """48 opens on 12 symbols, SIGKILL 0.05-0.7 s after each of 20 restarts, then a clean finish."""
    figures = run_crash_loop(
        tmp_path, LOOP_CYCLES, opens=48, seed=int(os.environ.get("QUANTUM_REL_SEED", "7"))
    )
    assert figures.verdict is not None
    figures.verdict.assert_clean()
    assert figures.cycles == LOOP_CYCLES and figures.kills_with_work > 0
    assert figures.errors.get("POISON_MESSAGE", 0) == 0, figures.errors
    assert figures.statuses == {"filled": 48}, (figures.statuses, figures.errors)
    assert figures.wrong_positions == []
    assert figures.secrets_found == []


@pytest.mark.timeout(120)
def test_exchange_faults_have_their_expected_outcomes(tmp_path: Path) -> None:
    figures = run_exchange_faults(tmp_path)  # each case asserts its own outcome
    assert figures.verdict is not None
    figures.verdict.assert_clean()
    assert figures.secrets_found == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", ["restart", "drops", "stale_consumer"])
def test_redis_faults_lose_and_double_nothing(tmp_path: Path, scenario: str) -> None:
    figures = run_redis_fault(tmp_path, scenario, rounds=1 if scenario == "stale_consumer" else 2)
    assert figures.verdict is not None
    figures.verdict.assert_clean()
    assert figures.events > 0
    assert figures.secrets_found == []


@pytest.mark.timeout(180)
def test_fuzzed_input_is_answered_and_never_traded(tmp_path: Path) -> None:
    figures = run_fuzz(tmp_path, FUZZ_CASES, batch=100)
    assert figures.cases == FUZZ_CASES
    assert figures.undecodable > 0 and figures.rejected > 0
    assert figures.exit_code == 0
    assert figures.secrets_found == []
