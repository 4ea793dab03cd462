"""Adversarial review of the risk governor (issue #28), review four: "no entry order reaches the
exchange after a transition's moment".

FAILS on feat/riskfix2: an instance admitted an entry and is paused (SIGSTOP: a stall, a swap storm,
a VM migration) between its admission and its send, shorter than its symbol lease. The HALT waits
``DRAIN_DEADLINE_S`` for the admission to settle, then goes ahead (``drain.unsettled`` 1); the paused
instance wakes, still the lease holder, and sends its entry after the event's time: nothing re-checks
the admission before the order leaves (the gateway's fence checks the lease only). Checked from the
simulator's order history.
"""

from __future__ import annotations

import json
import signal
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.core.ids import client_order_id
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def _events(desk: Desk) -> list[dict[str, Any]]:
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]


async def test_an_entry_paused_between_admission_and_send_does_not_reach_the_exchange_after_a_halt(
    desk: Desk, tmp_path: Path
) -> None:
    risk = {"risk_stream": f"{desk.names['intent_stream']}:risk"}
    worker = KillableService(desk, tmp_path, consumer_name="paused-worker", lease_ttl_ms=30000, **risk)
    sim = desk.sim
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        assert worker.proc is not None
        # The leverage call sits between the admission and the entry order: held 2 s at the simulator.
        sim.set_faults(
            faults=[
                {"kind": "latency", "ms": 2000, "method": "POST", "path": "/fapi/v1/leverage", "count": 1}
            ]
        )
        await desk.publish(intent_id="paused", symbol="BNBUSDT", side="BUY", quantity="0.50", leverage=7)
        await wait_for(
            lambda: not sim.state()["faults"]["faults"], 15, "the entry admitted, its leverage call held"
        )
        worker.proc.send_signal(signal.SIGSTOP)
        store = RiskStore(desk.redis, desk.settings(**risk))
        assert (
            await store.transition(Request(TradingState.HALTED, "review: halt", "operator:review"))
            is not None
        )
        worker.proc.send_signal(signal.SIGCONT)
        result = await desk.result("paused", timeout_s=40)
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)
        worker.kill()
    (event,) = [e for e in await _events(desk) if e["kind"] == "transition"]
    moment_ms = int(datetime.fromisoformat(event["time"]).timestamp() * 1000)
    sent = [o for o in sim.state()["orders"] if o["clientOrderId"] == client_order_id("paused", "entry")]
    late = [int(o["time"]) - moment_ms for o in sent if int(o["time"]) > moment_ms]
    assert late == [], (
        f"the paused instance sent its entry {late} ms after the HALT's moment (drain {event.get('drain')}, "
        f"result {result.status.value})"
    )
