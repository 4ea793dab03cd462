"""Adversarial review of the risk governor (issue #28), review four: "limits never crossed by
concurrent entries".

FAILS on feat/riskfix2: a working LIMIT entry reserves its notional while it works; its instance is
SIGKILLed and the survivor resumes it (it finds the resting order and follows it), but the resumed
attempt never reserves again (:meth:`quantum_exec.execution.executor.Executor._open` skips the
admission when the entry is found), so the killed instance's reservation lapses after
``reservations.LEASE_MS`` while the LIMIT still rests. A second entry is then admitted against a
book without the LIMIT; both fill and the account crosses ``max_open_positions`` and
``max_gross_notional_usd``. Checked from the simulator's positions.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.core.ids import client_order_id
from quantum_exec.risk.reservations import LEASE_MS
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

D = Decimal
LIMIT_USD = D(150)


async def _redis_ms(desk: Desk) -> int:
    seconds, micros = await desk.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _entry(desk: Desk, intent_id: str) -> dict[str, Any] | None:
    found = [
        o for o in desk.sim.state()["orders"] if o["clientOrderId"] == client_order_id(intent_id, "entry")
    ]
    return found[-1] if found else None


async def test_a_resumed_limit_entry_keeps_its_reservation_after_the_kill(desk: Desk, tmp_path: Path) -> None:
    limits = {
        "risk_stream": f"{desk.names['intent_stream']}:risk",
        "risk_max_gross_notional_usd": str(LIMIT_USD),
        "risk_max_open_positions": 1,
    }
    worker = KillableService(desk, tmp_path, consumer_name="limit-worker", **limits)
    reserved = f"{desk.names['key_prefix']}:risk:reserved"
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        mark = desk.sim.engine.mark("DOGEUSDT")
        price = (mark * D("0.995")).quantize(D(desk.sim.engine.spec("DOGEUSDT").tick_size))
        await desk.publish(
            intent_id="rest",
            symbol="DOGEUSDT",
            side="BUY",
            position_size_usd="100",
            leverage=2,
            order_type="LIMIT",
            price=str(price),
            expire_after_s=170,
            stop_loss_pct=3,
        )
        await wait_for(lambda: (_entry(desk, "rest") or {}).get("status") == "NEW", 20, "the LIMIT resting")
        assert await desk.redis.hexists(reserved, "rest")  # the working LIMIT holds its notional
        worker.kill()
    finally:
        worker.kill()
    await desk.service(**limits, claim_idle_ms=1000, consumer_name="survivor")
    until = f"{reserved}:until"

    killed_at = await _redis_ms(desk)

    async def lapsed() -> bool:
        return await _redis_ms(desk) > killed_at + LEASE_MS + 1000

    # The killed instance's reservation would have lapsed by now (30 s) unless the resumed attempt
    # reserved again (then it is renewed: still held, and counted by the second entry's admission).
    await wait_for(lapsed, 60, "the killed instance's reservation lease running out")
    score = await desk.redis.zscore(until, "rest")
    assert score is not None and score > await _redis_ms(desk), "the resumed LIMIT's reservation lapsed"
    assert (_entry(desk, "rest") or {}).get("status") == "NEW", (
        "the LIMIT still rests, followed by the survivor"
    )
    eth = (D(100) / desk.sim.engine.mark("ETHUSDT")).quantize(D("0.001"))
    await desk.publish(intent_id="second", symbol="ETHUSDT", side="BUY", quantity=str(eth), stop_loss_pct=5)
    second = await desk.result("second", timeout_s=30)
    desk.sim.set_mark_price("DOGEUSDT", price * D("0.99"))
    await wait_for(lambda: (_entry(desk, "rest") or {}).get("status") == "FILLED", 20, "the LIMIT filled")
    state = desk.sim.state()
    opened = {
        p["symbol"]: D(p["positionAmt"]) * D(p["markPrice"])
        for p in state["positions"]
        if D(p["positionAmt"]) != 0
    }
    gross = sum((abs(v) for v in opened.values()), D(0))
    assert len(opened) <= 1 and gross <= LIMIT_USD, (
        f"{len(opened)} positions (max_open_positions 1), gross {gross:.2f} USD (limit {LIMIT_USD}): the "
        f"second entry was admitted ({second.status.value}) while our resumed LIMIT rested unreserved"
    )
