"""The adversarial run, short, with Redis behind Sentinel failing over while entries are in flight.

Eight rounds of seed 5 (four of them meet a failover: market, limit, twap and a pyramid on an open
position, each SIGKILLing the master while its order request is held at the exchange); the
services ride each failover, then one clean instance drains everything. Zero violations of the
five promises, counted from the simulator's own order history (tests/reliability/adversary.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.adversary import run_adversarial

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@pytest.mark.timeout(420)
def test_a_redis_failover_mid_entry_breaks_no_promise(tmp_path: Path) -> None:
    figures = run_adversarial(tmp_path, 8, seed=5, failover=True)
    assert figures.verdict is not None
    assert figures.verdict.violations == {}, figures.verdict.violations
    failovers = {k: n for k, n in figures.steps.items() if k.endswith(":redis_failover")}
    assert sum(failovers.values()) >= 3, figures.steps  # the seed's rounds that meet a failover
    assert sum(figures.hits[k] for k in failovers) >= 3, figures.hits  # each with its order in flight
    assert figures.internal == [], figures.internal
